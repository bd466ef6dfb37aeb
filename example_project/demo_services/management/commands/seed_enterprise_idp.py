import json
from typing import Any

from django.core.management.base import BaseCommand

from example_project.demo_services.enterprise import seed_enterprise_idp


class Command(BaseCommand):
    help = (
        "seed_demo for an enterprise IdP: the cast, plus another domain's authorization server "
        "registered as an external authorization server that agent1 may obtain ID-JAGs for "
        "(secrets printed once)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--tools-issuer", required=True, help="issuer of the other domain's authorization server"
        )
        parser.add_argument("--mcp-url", required=True, help="URL of the MCP server that server protects")
        parser.add_argument("--client-id", required=True, help="agent1's client id at that server")

    def handle(self, *args: Any, **options: Any) -> None:
        cast = seed_enterprise_idp(options["tools_issuer"], options["mcp_url"], options["client_id"])
        self.stdout.write(json.dumps(cast))
