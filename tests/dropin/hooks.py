"""Classes a site might point django-oauth-toolkit's hooks at, for the check tests."""

from django.views.debug import ExceptionReporter

from delegation_idp.provider.server import DelegationServer


class MyServer(DelegationServer):
    """A site's own subclass of the hook: accepted."""


class LeakyFilter:
    """An exception reporter filter that is not SafeExceptionReporterFilter."""

    reporter = ExceptionReporter
