"""The Gradio viewer: the page, what it does for a browser session, and its camera plot."""
