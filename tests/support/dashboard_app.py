"""app.py for AppTest, run from tests/support/ so that no `pages/` folder sits beside the main
script.

AppTest resets Streamlit's pages-directory mode before every run, and with `pages/` next to
app.py each run would start in that legacy mode (as only a fresh server's very first
request does; ui/navigation.py). From here every run starts with `st.navigation` in
charge, as on a real server after its first request. Pages are then addressed by their
file: `at.switch_page(page_script("compare"))` (tests/support/app_test.py).
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[2] / "app.py"))
