import json
from typing import Any

from django.core.management.base import BaseCommand

from example_project.demo_services.cast import seed_live


class Command(BaseCommand):
    help = (
        "seed_demo for the live demo: the cast, the MCP server's and the resource server's URLs as "
        "RFC 8707 resource prefixes, and the resource server's introspection client (secrets printed once)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--mcp-url", default="", help="URL the MCP server is served at")
        parser.add_argument("--resource-url", default="", help="URL prefix of the resource server's API")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(seed_live(options["mcp_url"], options["resource_url"])))
