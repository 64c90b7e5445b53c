#!/usr/bin/env bash
# The README's picture (docs/images/workbook.png): the first page of the hand-sized VAE's iteration 1,
# as LibreOffice prints it, cropped to its first blocks.  Needs tracer, soffice and poppler-utils.
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/docs/images/workbook.png"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
tracer run vae --size 4 --hidden 2 -o vae4.xlsx >/dev/null
TMPDIR="$work" soffice --headless "-env:UserInstallation=file://$work/profile" --convert-to pdf vae4.xlsx >/dev/null
pages=$(pdfinfo vae4.pdf | awk '/^Pages:/ {print $2}')
for ((page = 1; page <= pages; page++)); do  # the page where iteration 1's forward pass begins
    if pdftotext -f "$page" -l "$page" vae4.pdf - | grep -q '^1 Forward pass'; then break; fi
done
pdftoppm -r 130 -png -singlefile -f "$page" -l "$page" -x 62 -y 80 -W 640 -H 440 vae4.pdf picture
mv picture.png "$out"
echo "wrote $out (page $page)"
