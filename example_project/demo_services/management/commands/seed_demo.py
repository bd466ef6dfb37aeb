import json
from typing import Any

from django.core.management.base import BaseCommand

from example_project.demo_services.seed import seed


class Command(BaseCommand):
    help = "Create the seed's cast: a user, agent1, agent2, mcp-server1 and a resource server, with rules."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--resource-prefixes", default="", help="Resource URL prefixes of the resource server"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data = seed(resource_prefixes=options["resource_prefixes"])
        if options["json"]:
            self.stdout.write(json.dumps(data))
        else:
            self.stdout.write(json.dumps(data, indent=2))
