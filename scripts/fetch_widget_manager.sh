#!/bin/sh
# Put the Jupyter widget manager for static pages (@jupyter-widgets/html-manager,
# BSD-3-Clause) into book/_static/html-manager-<version>/, so the built book renders
# ipywidgets from its own _static folder instead of a CDN. Idempotent; `make book`
# runs it. The files (~5 MB: embed.js and Font Awesome fonts) are not vendored in git.
#
#   sh scripts/fetch_widget_manager.sh      # downloads once from the npm registry
#
# The tarball is checked against the integrity hash the registry publishes for this
# version. Set NPM_REGISTRY to use a mirror. Needs only python3 (no node or npm).
# _config.yml points myst-nb at the file: sphinx.config.nb_ipywidgets_js.
set -eu

VERSION=1.0.15
INTEGRITY="sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
REGISTRY="${NPM_REGISTRY:-https://registry.npmjs.org}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/book/_static/html-manager-$VERSION"

if [ -s "$DEST/embed.js" ] && [ -s "$DEST/LICENSE" ]; then
    echo "$DEST/embed.js"
    exit 0
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

"$PYTHON" - "$REGISTRY/@jupyter-widgets/html-manager/-/html-manager-$VERSION.tgz" \
    "$INTEGRITY" "$DEST" <<'PY'
import base64, hashlib, io, shutil, sys, tarfile, tempfile, urllib.request
from pathlib import Path

url, integrity, dest = sys.argv[1], sys.argv[2], Path(sys.argv[3])
try:
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
except OSError as error:
    sys.exit(f"fetch_widget_manager.sh: cannot download {url}: {error}")
algorithm, expected = integrity.split("-", 1)
digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
if digest != expected:
    sys.exit(f"fetch_widget_manager.sh: {url} does not match its published {algorithm} hash")

# embed.js: the standalone manager (no RequireJS); it renders the standard widgets
# (@jupyter-widgets/base, controls and output, ipywidgets 7 and 8 state) and loads
# its Font Awesome fonts from next to itself. Source maps and the AMD build are left out.
keep = (".woff2", ".woff", ".ttf", ".eot", ".svg")
dest.parent.mkdir(parents=True, exist_ok=True)
tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
try:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not member.isfile() or not name.startswith("package/dist/") or "/" in name[len("package/dist/"):]:
                continue
            base = name[len("package/dist/"):]
            if base in ("embed.js", "embed.js.LICENSE.txt") or base.endswith(keep):
                (tmp / base).write_bytes(tar.extractfile(member).read())
    if not (tmp / "embed.js").is_file():
        sys.exit("fetch_widget_manager.sh: the tarball has no dist/embed.js")
    (tmp / "LICENSE").write_text(
        "@jupyter-widgets/html-manager (https://github.com/jupyter-widgets/ipywidgets),\n"
        "downloaded from the npm registry by scripts/fetch_widget_manager.sh.\n"
        "embed.js bundles third-party code under the MIT license (embed.js.LICENSE.txt);\n"
        "the font files are Font Awesome Free 5 (fonts: SIL OFL 1.1, https://fontawesome.com/license/free).\n\n"
        "Copyright (c) 2015 Project Jupyter Contributors\nAll rights reserved.\n\n"
        "Redistribution and use in source and binary forms, with or without\n"
        "modification, are permitted provided that the following conditions are met:\n\n"
        "1. Redistributions of source code must retain the above copyright notice, this\n"
        "   list of conditions and the following disclaimer.\n\n"
        "2. Redistributions in binary form must reproduce the above copyright notice,\n"
        "   this list of conditions and the following disclaimer in the documentation\n"
        "   and/or other materials provided with the distribution.\n\n"
        "3. Neither the name of the copyright holder nor the names of its\n"
        "   contributors may be used to endorse or promote products derived from\n"
        "   this software without specific prior written permission.\n\n"
        'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"\n'
        "AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE\n"
        "IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE\n"
        "DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE\n"
        "FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL\n"
        "DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR\n"
        "SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER\n"
        "CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,\n"
        "OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE\n"
        "OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.\n"
    )
    tmp.chmod(0o755)  # mkdtemp makes it private; the web server must read it
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)  # appears complete or not at all
finally:
    shutil.rmtree(tmp, ignore_errors=True)
PY
echo "$DEST/embed.js"
