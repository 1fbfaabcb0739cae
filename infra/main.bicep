// Portcullis: just-in-time VM access as a Python Azure Functions app, deployed with `azd up`.
// Subscription scope, so that one deployment creates the app's resource group, the custom role and
// its assignments on the subscriptions / resource groups whose VMs, NSGs and firewalls it manages.
// Plain resources and local modules only (no registry modules): it builds and is checked offline.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of the app and its storage (a region where Flex Consumption is offered).')
param location string

@description('Resource group for the app; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Client (application) id of the Entra ID app registration that Easy Auth validates tokens for (infra/hooks/preprovision creates one when empty).')
param authClientId string

// Lists are comma-separated strings, so that `azd env set NAME "a,b"` can pass them.
@description('Comma-separated subscription ids whose VMs, NSGs and firewalls Portcullis manages (role assigned at subscription scope).')
param managedSubscriptions string = ''

@description('Comma-separated resource group ids (/subscriptions/<id>/resourceGroups/<name>) Portcullis manages, when a whole subscription is too wide.')
param managedResourceGroups string = ''

@description('Comma-separated object ids of principals (ticketing systems) allowed to send access requests to the requests queue.')
param requestSenders string = ''

@description('Comma-separated email addresses paged when a revoke keeps failing; empty = the alert fires without notifying anyone.')
param alertEmails string = ''

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Zone-redundant Flex Consumption plan (only in regions that offer it).')
param zoneRedundant bool = false

@description('Replication of the app storage account; Standard_LRS in regions without availability zones.')
@allowed(['Standard_ZRS', 'Standard_LRS', 'Standard_GZRS', 'Standard_GRS'])
param storageSku string = 'Standard_ZRS'

// Application settings (README "Configuration"); defaults match shared/settings.py.
param requestsQueueName string = 'jit-requests'
param convergeQueueName string = 'jit-converge'
@minLength(1)
@maxLength(40)
param tablePrefix string = 'portcullis'
param armPollingIntervalSeconds string = '5'
@minValue(0)
@maxValue(3600)
param rbacCacheSeconds int = 60
@minValue(1)
@maxValue(100)
param maxVmsPerRequest int = 10
@minValue(1)
@maxValue(100)
param maxPortsPerRequest int = 10
@minValue(1)
@maxValue(5000)
param maxVmsPerPolicy int = 500
@minValue(1024)
@maxValue(4194304)
param maxBodyBytes int = 65536
param nsgAllowPriorities string = '3000-3499'
param nsgDenyPriorities string = '3500-3999'
@minValue(100)
@maxValue(65000)
param firewallNatCollectionPriority int = 100
@minValue(100)
@maxValue(65000)
param firewallPolicyRuleCollectionGroupPriority int = 100
param mappedPorts string = '50000-50999'
@minValue(15)
@maxValue(3600)
param convergeLeaseSeconds int = 30
@description('Targets a reconcile pass converges at once when they differ (PORTCULLIS_RECONCILE_CONCURRENCY).')
@minValue(1)
@maxValue(32)
param reconcileConcurrency int = 4
@description('Proxies (Front Door, API Management) in front of the app: the caller is that many X-Forwarded-For entries left of the last.')
@minValue(0)
@maxValue(10)
param trustedProxyHops int = 0
@description('Whether senders to the requests queue may assert the requester\'s group memberships (groupIds).')
param queueTrustsGroupClaims bool = false
@description('Comma-separated names of jit-requests senders whose messages may carry a prior approval (priorApproval.sender); empty: none')
param trustedApprovalSenders string = ''
@description('Queue of notification deliveries (PORTCULLIS_EVENTS_QUEUE); its poison queue is <name>-poison.')
param eventsQueueName string = 'jit-events'
@description('Comma-separated https webhook URLs that receive every event (PORTCULLIS_WEBHOOK_URLS); empty: none.')
param webhookUrls string = ''
@description('Standard Webhooks signing secret, whsec_ + base64 of 24-64 random bytes (PORTCULLIS_WEBHOOK_SECRET); required with webhookUrls. Prefer a Key Vault reference: @Microsoft.KeyVault(SecretUri=...).')
@secure()
param webhookSecret string = ''
@description('Optional Event Grid topic endpoint (PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT); grant the app identity EventGrid Data Sender on the topic.')
param eventGridTopicEndpoint string = ''
@minValue(1)
@maxValue(20)
param eventsMaxAttempts int = 8
@minValue(1)
@maxValue(3600)
param eventsRetrySeconds int = 30

var tags = { 'azd-env-name': environmentName, application: 'portcullis' }
var managedSubscriptionIds = empty(managedSubscriptions) ? [] : split(replace(managedSubscriptions, ' ', ''), ',')
var managedResourceGroupIds = empty(managedResourceGroups) ? [] : split(replace(managedResourceGroups, ' ', ''), ',')
var requestSenderPrincipalIds = empty(requestSenders) ? [] : split(replace(requestSenders, ' ', ''), ',')
var alertEmailAddresses = empty(alertEmails) ? [] : split(replace(alertEmails, ' ', ''), ',')
var appResourceGroupName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var managedSubscriptionScopes = [for id in managedSubscriptionIds: '/subscriptions/${id}']
// The role must be assignable where it is assigned; the deployment subscription is listed too because a
// custom role is created in one subscription (assignable is not assigned: it grants nothing there).
var assignableScopes = union([subscription().id], managedSubscriptionScopes, managedResourceGroupIds)

resource appResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: appResourceGroupName
  location: location
  tags: tags
}

module app 'modules/app.bicep' = {
  name: 'portcullis-app'
  scope: appResourceGroup
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    authClientId: authClientId
    requestSenderPrincipalIds: requestSenderPrincipalIds
    alertEmailAddresses: alertEmailAddresses
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    logRetentionDays: logRetentionDays
    requestsQueueName: requestsQueueName
    convergeQueueName: convergeQueueName
    tablePrefix: tablePrefix
    armPollingIntervalSeconds: armPollingIntervalSeconds
    rbacCacheSeconds: rbacCacheSeconds
    maxVmsPerRequest: maxVmsPerRequest
    maxPortsPerRequest: maxPortsPerRequest
    maxVmsPerPolicy: maxVmsPerPolicy
    maxBodyBytes: maxBodyBytes
    nsgAllowPriorities: nsgAllowPriorities
    nsgDenyPriorities: nsgDenyPriorities
    firewallNatCollectionPriority: firewallNatCollectionPriority
    firewallPolicyRuleCollectionGroupPriority: firewallPolicyRuleCollectionGroupPriority
    mappedPorts: mappedPorts
    convergeLeaseSeconds: convergeLeaseSeconds
    reconcileConcurrency: reconcileConcurrency
    trustedProxyHops: trustedProxyHops
    queueTrustsGroupClaims: queueTrustsGroupClaims
    trustedApprovalSenders: trustedApprovalSenders
    eventsQueueName: eventsQueueName
    webhookUrls: webhookUrls
    webhookSecret: webhookSecret
    eventGridTopicEndpoint: eventGridTopicEndpoint
    eventsMaxAttempts: eventsMaxAttempts
    eventsRetrySeconds: eventsRetrySeconds
    zoneRedundant: zoneRedundant
    storageSku: storageSku
  }
}

module operatorRole 'modules/operator-role.bicep' = {
  name: 'portcullis-operator-role'
  params: {
    environmentName: environmentName
    assignableScopes: assignableScopes
  }
}

module subscriptionAssignments 'modules/role-assignment-subscription.bicep' = [
  for subscriptionId in managedSubscriptionIds: {
    name: 'portcullis-operator-${uniqueString(subscriptionId, environmentName)}'
    scope: subscription(subscriptionId)
    params: {
      principalId: app.outputs.identityPrincipalId
      roleDefinitionId: operatorRole.outputs.roleDefinitionId
    }
  }
]

module resourceGroupAssignments 'modules/role-assignment-resource-group.bicep' = [
  for resourceGroupId in managedResourceGroupIds: {
    name: 'portcullis-operator-${uniqueString(resourceGroupId, environmentName)}'
    scope: resourceGroup(split(resourceGroupId, '/')[2], split(resourceGroupId, '/')[4])
    params: {
      principalId: app.outputs.identityPrincipalId
      roleDefinitionId: operatorRole.outputs.roleDefinitionId
    }
  }
]

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = appResourceGroup.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output PORTCULLIS_API_URL string = app.outputs.apiUrl
output PORTCULLIS_IDENTITY_PRINCIPAL_ID string = app.outputs.identityPrincipalId
output PORTCULLIS_IDENTITY_CLIENT_ID string = app.outputs.identityClientId
output PORTCULLIS_STORAGE_ACCOUNT string = app.outputs.storageAccountName
output PORTCULLIS_OPERATOR_ROLE_ID string = operatorRole.outputs.roleDefinitionId
