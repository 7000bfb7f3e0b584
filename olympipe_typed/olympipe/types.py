"""olympipe's ``olympipe.types``: the type variables its signatures use, and a server route."""

from typing import TypeVar

from .._server import RouteHandler as RouteHandler
from .._server import RouteMethod as RouteMethod

__all__ = ["ClassType", "InPacket", "OptionalInPacket", "OutPacket", "RouteHandler", "RouteMethod"]

InPacket = TypeVar("InPacket")
OutPacket = TypeVar("OutPacket")
ClassType = TypeVar("ClassType")
OptionalInPacket = TypeVar("OptionalInPacket")
