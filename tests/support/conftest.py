from tests.support.tls import https_documents, tls_authority  # noqa: F401 - fixtures
