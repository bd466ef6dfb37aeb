"""Build the stock site's cast in its own fresh database; run as ``python -m bench.stock_site``
(with ``DJANGO_SETTINGS_MODULE=bench.stock_settings``) by bench.run.

Prints JSON: two confidential client-credentials applications, ``unhashed``
(``hash_client_secret=False``: the secret is stored as it is) and ``hashed``
(django-oauth-toolkit's default: Django's password hasher), each with its client id,
secret and the format of its stored secret.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Any


def build() -> dict[str, Any]:
    from oauth2_provider.models import get_application_model

    Application = get_application_model()
    out: dict[str, Any] = {}
    for name, hashed in (("unhashed", False), ("hashed", True)):
        secret = secrets.token_urlsafe(32)
        app = Application.objects.create(
            name=f"stock {name}",
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,
            hash_client_secret=hashed,
        )
        app.refresh_from_db()
        stored = app.client_secret
        out[name] = {
            "client_id": app.client_id,
            "client_secret": secret,
            # The hasher's name (e.g. "pbkdf2_sha256") or "plain"; never the stored value.
            "stored": stored.split("$")[0] if stored != secret else "plain",
        }
    return out


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock_settings")
    django.setup()
    json.dump(build(), sys.stdout)


if __name__ == "__main__":
    main()
