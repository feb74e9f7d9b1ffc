"""The web dashboard's server (``aigw web``, port 3000): the built single-page application
(``web/`` in the repository, built into ``static/``) and two proxies, ``/api/*`` to the config
center and ``/gateway/*`` to a gateway, so the browser talks to one origin only."""
