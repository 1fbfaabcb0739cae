#!/bin/sh
# azd preprovision hook: make sure Easy Auth has an Entra ID app registration to validate tokens for.
# Reuses AUTH_CLIENT_ID when set (`azd env set AUTH_CLIENT_ID <client id>`); otherwise creates (or
# finds) the registration "portcullis-<environment>" with an `access_as_user` scope and the Azure CLI
# pre-authorized, so `az account get-access-token --resource api://<client id>` works for callers.
# Needs the Azure CLI signed in as someone allowed to register applications.
set -eu

if [ -n "${AUTH_CLIENT_ID:-}" ]; then
  echo "portcullis: using the existing app registration $AUTH_CLIENT_ID"
  # Ours only if this hook made it (postprovision.sh then adds the web page's redirect URI).
  [ "${PORTCULLIS_APP_REGISTRATION_MANAGED:-}" = "true" ] || azd env set PORTCULLIS_APP_REGISTRATION_MANAGED false
  exit 0
fi
command -v az >/dev/null || { echo "portcullis: the Azure CLI (az) is required to create the app registration" >&2; exit 1; }

name="portcullis-${AZURE_ENV_NAME}"
client_id=$(az ad app list --display-name "$name" --query "[0].appId" -o tsv)
if [ -z "$client_id" ]; then
  echo "portcullis: creating the app registration $name"
  client_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId -o tsv)
fi
object_id=$(az ad app show --id "$client_id" --query id -o tsv)

scope_id=$(az ad app show --id "$client_id" --query "api.oauth2PermissionScopes[?value=='access_as_user'].id | [0]" -o tsv)
if [ -z "$scope_id" ]; then
  scope_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
fi
azure_cli_client_id="04b07795-8ddb-461a-bbee-02f9e1bf7b46"
graph="https://graph.microsoft.com/v1.0/applications/$object_id"
# Two PATCHes: Graph accepts a pre-authorization only for a scope that already exists.
az rest --method PATCH --uri "$graph" --headers "Content-Type=application/json" --body "{
  \"identifierUris\": [\"api://$client_id\"],
  \"api\": {\"requestedAccessTokenVersion\": 2, \"oauth2PermissionScopes\": [{
    \"id\": \"$scope_id\", \"value\": \"access_as_user\", \"type\": \"User\", \"isEnabled\": true,
    \"adminConsentDisplayName\": \"Use Portcullis\",
    \"adminConsentDescription\": \"Request just-in-time VM access through Portcullis.\",
    \"userConsentDisplayName\": \"Use Portcullis\",
    \"userConsentDescription\": \"Request just-in-time VM access through Portcullis.\"}]}}" >/dev/null
az rest --method PATCH --uri "$graph" --headers "Content-Type=application/json" --body "{
  \"api\": {\"preAuthorizedApplications\": [
    {\"appId\": \"$azure_cli_client_id\", \"delegatedPermissionIds\": [\"$scope_id\"]}]}}" >/dev/null
# A service principal lets users and ticketing systems get tokens for the app in this tenant.
az ad sp show --id "$client_id" >/dev/null 2>&1 || az ad sp create --id "$client_id" >/dev/null
azd env set AUTH_CLIENT_ID "$client_id"
azd env set PORTCULLIS_APP_REGISTRATION_MANAGED true
echo "portcullis: app registration $name ($client_id) ready"
