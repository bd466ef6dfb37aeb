"""Run one of the live demo's services: ``python -m example_project.demo_services.serve ROLE PORT``.

Configuration comes from the environment (``DEMO_*``), so secrets never appear
on a command line. Roles: ``agent1``, ``agent2``, ``mcp-server1``, ``resource-server``.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def application(role: str) -> Any:
    if role in ("agent1", "agent2"):
        from .agents import AgentConfig, agent_app

        config = AgentConfig(
            issuer=_env("DEMO_ISSUER"),
            uri=_env("DEMO_URI"),
            client_id=_env("DEMO_CLIENT_ID"),
            client_secret=_env("DEMO_CLIENT_SECRET"),
            next_url=_env("DEMO_NEXT_URL"),
            next_audience=os.environ.get("DEMO_NEXT_AUDIENCE") or None,
            public_url=os.environ.get("DEMO_PUBLIC_URL", ""),
            redirect_uri=os.environ.get("DEMO_REDIRECT_URI", ""),
            payments_url=os.environ.get("DEMO_PAYMENTS_URL", ""),
            approval_wait=int(os.environ.get("DEMO_APPROVAL_WAIT") or 300),
        )
        return agent_app(config, mcp_tool="list_tasks" if role == "agent2" else None)
    if role == "mcp-server1":
        from .mcp_server import McpConfig, mcp_app

        return mcp_app(
            McpConfig(
                issuer=_env("DEMO_ISSUER"),
                uri=_env("DEMO_URI"),
                public_url=_env("DEMO_PUBLIC_URL"),
                client_id=_env("DEMO_CLIENT_ID"),
                client_secret=_env("DEMO_CLIENT_SECRET"),
                resource_url=_env("DEMO_NEXT_URL"),
            )
        )
    if role == "resource-server":
        os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.demo_services.resource_settings"
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    raise SystemExit(f"unknown role {role!r}")


def main(argv: list[str]) -> None:
    import uvicorn

    role, port = argv[1], int(argv[2])
    uvicorn.run(application(role), host="127.0.0.1", port=port, log_level="warning", lifespan="auto")


if __name__ == "__main__":
    main(sys.argv)
