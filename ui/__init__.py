"""Regard's Gradio app: layout, handlers over an explicit ``Context``, theme and the browser-side explorer.

``build_demo(paths)`` lays the page out; ``ui.server.launch(demo)`` serves it hardened. The model runs
only on the server (``ui.handlers``); every translation's trace is sent to the page once
(``model.trace_json``) and ``static/regard.js`` slices and draws it there.
"""
