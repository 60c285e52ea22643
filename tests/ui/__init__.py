"""The dashboard (app.py, pages/, ui/): AppTest, and Chromium end to end."""
