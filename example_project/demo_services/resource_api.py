"""The seed's resource server as a Django REST framework API.

It trusts the provider's tokens through :mod:`delegation_idp.resource_server.drf` and
answers who it is serving and through which chain of agents.

``POST /api/payments/`` is the demo's sensitive action: it takes only a token that carries
the payment the user approved (RFC 9396 ``authorization_details`` of type
``payment_initiation``, which the provider issues only once the user approved the hop on its
approval page, OpenID CIBA), and answers the chain and the approved details it saw.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from delegation_idp.resource_server.drf import DelegatedTokenAuthentication, HasScopes, MaxDelegationDepth
from delegation_idp.resource_server.validation import DelegatedToken

TASKS = [
    {"id": 1, "title": "Book the venue"},
    {"id": 2, "title": "Send the invitations"},
]


def describe(token: DelegatedToken) -> dict[str, Any]:
    """What a service saw in a token: no token, only its claims' meaning."""
    return {
        "sub": token.subject,
        "actors": list(token.actors),
        "depth": token.depth,
        "client_id": token.client_id,
        "scope": token.scope,
        "jti": token.jti,
        "aud": list(token.audiences),
        "jkt": token.jkt,  # the key the token is bound to (RFC 9449 cnf.jkt), None if bearer
    }


class TasksView(APIView):
    """``GET``: the user's tasks, and the chain they were asked for through."""

    authentication_classes = [DelegatedTokenAuthentication]
    permission_classes = [HasScopes, MaxDelegationDepth]
    required_scopes = ("tasks.read",)
    max_delegation_depth = 4

    def get(self, request: Request) -> Response:
        token: DelegatedToken = request.auth
        return Response(
            {
                "resource_server": token.audiences[0] if token.audiences else None,
                "serving": token.subject,
                "through": " <- ".join(token.actors),
                "saw": describe(token),
                "tasks": TASKS,
            }
        )


def approved_payments(token: DelegatedToken) -> list[dict[str, Any]]:
    """The ``payment_initiation`` objects of the token's ``authorization_details``."""
    details = token.claims.get("authorization_details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict) and d.get("type") == "payment_initiation"]


class PaymentsView(APIView):
    """``POST``: initiate the payment the user approved; 403 without an approved one."""

    authentication_classes = [DelegatedTokenAuthentication]
    permission_classes = [HasScopes, MaxDelegationDepth]
    required_scopes = ("tasks.write",)
    max_delegation_depth = 4

    def post(self, request: Request) -> Response:
        token: DelegatedToken = request.auth
        payments = approved_payments(token)
        if not payments:
            return Response({"error": "insufficient_authorization_details"}, status=403)
        return Response(
            {
                "resource_server": token.audiences[0] if token.audiences else None,
                "serving": token.subject,
                "through": " <- ".join(token.actors),
                "saw": describe(token),
                "authorization_details": payments,
                "payment": "initiated",
            }
        )
