"""Test infrastructure shared by several test areas: the provider served live, a TLS server
with its own certificate authority."""
