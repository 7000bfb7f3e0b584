"""olympipe's ``olympipe.helpers.server``: the HTTP source, and answering its requests.

``send_json_response(connection, data)`` answers a request from any stage, in any process:
``connection`` is the small picklable ``Connection`` each ``Pipeline.server`` item carries
(olympipe's is the client's socket, which only the process holding it can use).
"""

from ..._server import Connection as Connection
from ..._server import send_json_response as send_json_response
from ..._server import server_source as server_generator

__all__ = ["Connection", "send_json_response", "server_generator"]
