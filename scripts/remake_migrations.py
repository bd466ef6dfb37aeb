"""Regenerate delegation_idp's initial migration (pre-release only).

django-oauth-toolkit's models are swappable through settings that a site may
not define; the generated file is rewritten to read them from oauth2_settings,
as django-oauth-toolkit's own migrations do.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "delegation_idp" / "migrations"

for path in MIGRATIONS.glob("0*.py"):
    path.unlink()
(MIGRATIONS / "__init__.py").touch()
subprocess.run(
    [sys.executable, "manage.py", "makemigrations", "delegation_idp", "-n", "initial"], cwd=ROOT, check=True
)
target = MIGRATIONS / "0001_initial.py"
text = target.read_text()
text = re.sub(r"settings\.OAUTH2_PROVIDER_(\w+)_MODEL", r"oauth2_settings.\1_MODEL", text)
text = text.replace(
    "from django.db import migrations, models\n",
    "from django.db import migrations, models\nfrom oauth2_provider.settings import oauth2_settings\n",
)
target.write_text(text)
print(f"rewrote {target.relative_to(ROOT)}")
