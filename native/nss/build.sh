#!/usr/bin/env bash
# native/nss/build.sh [OUT_DIR]: builds the NSS lookup addon (see native/build-addon.sh).
exec bash "$(dirname "$0")/../build-addon.sh" nss "$@"
