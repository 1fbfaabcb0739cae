#!/bin/sh
# azd postprovision hook: let browsers sign in to the web page (/api/ui/) through Easy Auth.
# Easy Auth signs a browser in with an OpenID Connect ID token sent back to
# https://<app host>/.auth/login/aad/callback, so the app registration needs that redirect URI and
# ID token issuance. The host name exists only after provisioning, hence a post- not a pre- hook.
# It changes only the registration preprovision.sh created or found for this environment; for one
# you brought (`azd env set AUTH_CLIENT_ID ...`) it prints what to add instead.
set -eu

host=${PORTCULLIS_API_URL#https://}
host=${host%%/*}
callback="https://$host/.auth/login/aad/callback"

if [ "${PORTCULLIS_APP_REGISTRATION_MANAGED:-}" != "true" ]; then
  echo "portcullis: for the web page, give the app registration $AUTH_CLIENT_ID the web redirect URI"
  echo "  $callback and turn on ID tokens, e.g.:"
  echo "  az ad app update --id $AUTH_CLIENT_ID --web-redirect-uris $callback --enable-id-token-issuance true"
  echo "  (--web-redirect-uris replaces the list: include any URIs it already has)"
  exit 0
fi
command -v az >/dev/null || { echo "portcullis: the Azure CLI (az) is required to update the app registration" >&2; exit 1; }

existing=$(az ad app show --id "$AUTH_CLIENT_ID" --query "web.redirectUris" -o tsv)
uris=$(printf '%s\n%s\n' "$existing" "$callback" | sed '/^$/d' | sort -u | tr '\n' ' ')
# shellcheck disable=SC2086 # one argument per URI
az ad app update --id "$AUTH_CLIENT_ID" --web-redirect-uris $uris --enable-id-token-issuance true
echo "portcullis: the web page signs in at https://$host/.auth/login/aad?post_login_redirect_uri=/api/ui/"
