"""HTTP API and web dashboard for durable (distribution ``durable-web``): ``durable serve``.

Embed it in your own trio program with ``serve(executor, host=..., port=..., token=...)``, or take
the ASGI application of ``create_app(Service(executor))`` to any ASGI server on trio.
"""

from .app import create_app as create_app
from .server import serve as serve
from .service import Service as Service
