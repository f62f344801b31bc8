"""The web console: pages served from the broker process (``console.port``), reading the
broker's state in-process through :class:`kbroker.console.backend.ConsoleBackend`, never
through a client connection to itself. Starlette routes, Jinja2 templates, a little htmx
(vendored); imported only when the console is enabled."""
