#!/usr/bin/env bash
# Vendors the files of Swagger UI that GET /docs serves, from the npm package
# swagger-ui-dist, into gateway/docs/swagger-ui/:
#   scripts/vendor-swagger-ui.sh 5.35.0
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: scripts/vendor-swagger-ui.sh VERSION}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf "swagger-ui-dist-$version.tgz")
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
	cp "$tmp/package/$f" gateway/docs/swagger-ui/
done
sed -i "s/swagger-ui-dist\` [0-9.]*/swagger-ui-dist\` $version/" gateway/docs/swagger-ui/README.md
echo "vendored swagger-ui-dist $version into gateway/docs/swagger-ui/"
