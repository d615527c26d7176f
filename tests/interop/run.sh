#!/usr/bin/env bash
# make interop: install the peers (once, cached), build the proxy, run run.py.
#
# Installs into .cache/interop/ (ignored by git), from the package registries only:
#   py2/     venv with the official `mcp` SDK 2.x (the scenario client)
#   py1/     venv with the `mcp` SDK 1.x (the same scenario client, older SDK)
#   pytime/  venv with mcp-server-time (a Python stdio server)
#   node/    npm prefix with server-everything, the conformance CLI and node@22
# A second run reuses them: each part is reinstalled only when its pins change.
# INTEROP_LATEST=1 installs the newest versions instead of the pins.
# Extra arguments go to run.py (e.g. --only 'direct-*,server-sse').
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${INTEROP_CACHE:-$repo/.cache/interop}"
export INTEROP_CACHE="$cache"
# shellcheck source=versions.env
. "$here/versions.env"
mkdir -p "$cache"

python="${PYTHON:-python3}"
if [ "${INTEROP_LATEST:-0}" = 1 ]; then
    sdk2='mcp>=2,<3'; sdk1='mcp<2'; time_pkg='mcp-server-time'
    npm_pkgs=(@modelcontextprotocol/server-everything@latest @modelcontextprotocol/conformance@latest node@22)
    stamp_suffix="latest-$(date -u +%Y-%m-%d)"
else
    sdk2="mcp==$MCP_SDK2"; sdk1="mcp==$MCP_SDK1"; time_pkg="mcp-server-time==$MCP_SERVER_TIME"
    npm_pkgs=("@modelcontextprotocol/server-everything@$SERVER_EVERYTHING"
              "@modelcontextprotocol/conformance@$CONFORMANCE" "node@$NODE22")
    stamp_suffix=pinned
fi

# venv NAME SPEC: a venv under $cache/NAME holding SPEC, reinstalled when SPEC changes.
venv() {
    local dir="$cache/$1" spec="$2" stamp
    stamp="$spec $stamp_suffix"
    if [ "$(cat "$dir/.interop-stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
    echo "interop: installing $spec into $dir" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$spec"
    echo "$stamp" > "$dir/.interop-stamp"
}

venv py2 "$sdk2"
venv py1 "$sdk1"
venv pytime "$time_pkg"

node_stamp="${npm_pkgs[*]} $stamp_suffix"
if [ "$(cat "$cache/node/.interop-stamp" 2>/dev/null)" != "$node_stamp" ]; then
    echo "interop: installing ${npm_pkgs[*]} into $cache/node" >&2
    rm -rf "$cache/node"
    mkdir -p "$cache/node"
    npm install --prefix "$cache/node" --no-audit --no-fund --loglevel=error "${npm_pkgs[@]}" >&2
    echo "$node_stamp" > "$cache/node/.interop-stamp"
fi
node22="$cache/node/node_modules/node/bin/node"
case "$("$node22" --version 2>&1)" in
    v22.*) ;;
    *) echo "interop: $node22 is not a Node 22 runtime ($("$node22" --version 2>&1)); delete $cache/node and retry" >&2; exit 1 ;;
esac

if [ -z "${MCP_PROXY:-}" ] && { [ -z "${MCP_PROXY_SERVER:-}" ] || [ -z "${MCP_PROXY_CLIENT:-}" ]; }; then
    (cd "$repo" && cargo build --release --locked --quiet --bin mcp-proxy)
fi
if [ -z "${MCP_DEMO_SERVER:-}" ]; then
    (cd "$repo" && cargo build --release --locked --quiet --bin mcp-demo-server)
fi

echo "interop: mcp SDK $("$cache/py2/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')" \
     "and $("$cache/py1/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))'),"\
     "mcp-server-time $("$cache/pytime/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp-server-time"))'),"\
     "server-everything $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$cache/node/node_modules/@modelcontextprotocol/server-everything/package.json" | head -1),"\
     "conformance $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$cache/node/node_modules/@modelcontextprotocol/conformance/package.json" | head -1),"\
     "node $("$node22" --version)"
exec "$cache/py2/bin/python" "$here/run.py" "$@"
