"""The stock site's WSGI application (gunicorn ``bench.stock_wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock_settings")
application = get_wsgi_application()
