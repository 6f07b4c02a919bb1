"""Test-time adaptation: a small adapter trained on one scene's own input views, kept only when held-out inputs say it helps."""
