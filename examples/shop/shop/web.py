"""The shop's web process: ``python -m shop.web`` (stdlib WSGI, same config and models as appshell)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

from sqlalchemy import select

from shop import config
from shop.db import SessionLocal
from shop.models import Order

Start = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body: Any = {"ok": True}
    elif path == "/release":  # what appshell's release.expected_url checks against
        body = {"release": config.RELEASE}
    elif path == "/orders":
        with SessionLocal() as session:
            orders = session.scalars(select(Order).order_by(Order.id.desc()).limit(20)).all()
            body = [
                {"id": o.id, "customer": o.customer.email, "status": o.status, "total": str(o.total), "currency": config.CURRENCY}
                for o in orders
            ]
    else:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def main() -> None:
    with make_server("127.0.0.1", config.PORT, app) as server:
        print(f"shop web process on http://127.0.0.1:{config.PORT}/orders")
        server.serve_forever()


if __name__ == "__main__":
    main()
