// Everything in the app's resource group: identity, storage (identity-based only), monitoring,
// the Flex Consumption function app with Easy Auth, storage data roles and the revoke alert.
targetScope = 'resourceGroup'

param environmentName string
param location string
param tags object
param authClientId string
param requestSenderPrincipalIds array
param alertEmailAddresses array
param maximumInstanceCount int
param instanceMemoryMB int
param logRetentionDays int
param requestsQueueName string
param convergeQueueName string
param tablePrefix string
param armPollingIntervalSeconds string
param rbacCacheSeconds int
param maxVmsPerRequest int
param maxPortsPerRequest int
param maxVmsPerPolicy int
param maxBodyBytes int
param nsgAllowPriorities string
param nsgDenyPriorities string
param firewallNatCollectionPriority int
param firewallPolicyRuleCollectionGroupPriority int
param mappedPorts string
param convergeLeaseSeconds int
param reconcileConcurrency int
param trustedProxyHops int
param queueTrustsGroupClaims bool
param trustedApprovalSenders string
param eventsQueueName string
param webhookUrls string
@secure()
param webhookSecret string
param eventGridTopicEndpoint string
param eventsMaxAttempts int
param eventsRetrySeconds int
param zoneRedundant bool
param storageSku string

// Tables the app uses (it also creates them on first use; tests/infra keeps this list equal to the
// `table("...")` names in shared/). Each is `${tablePrefix}${name}`.
var tableNames = [
  'grants'
  'grantsbyvm'
  'grantsbytarget'
  'grantexpiry'
  'policyrequests'
  'approvals'
  'requestsbyrequester'
  'policies'
  'audit'
  'auditsubject'
  'findings'
  'leases'
]
// The Functions host moves a message that failed maxDequeueCount times (host.json) to <queue>-poison;
// the events queue's poison queue is written by the app itself (shared/notify/delivery.py).
var queueNames = [
  requestsQueueName
  '${requestsQueueName}-poison'
  convergeQueueName
  '${convergeQueueName}-poison'
  eventsQueueName
  '${eventsQueueName}-poison'
]

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var deploymentContainerName = 'app-package-${take(token, 10)}'
var revokeFailingEvent = 'revoke.failing' // shared/events.py EventId.REVOKE_FAILING (tests/unit/test_events.py)

// Built-in roles (ids are the same in every tenant).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-portcullis-${token}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stjit${take(token, 19)}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: storageSku }
  // checkov:skip=CKV_AZURE_206:Default ZRS keeps three synchronous copies across availability zones (storageSku parameter); the app runs in one region and could not use a geo-replica of its grants.
  // checkov:skip=CKV_AZURE_43:The name is stjit plus uniqueString(), lower-case alphanumerics of 18 characters; checkov cannot evaluate the interpolation.
  properties: {
    // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; every request must carry an Entra ID token because shared keys are off.
    // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35; access is by Entra ID only (allowSharedKeyAccess false, no SAS possible).
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in queueNames: {
    parent: queueService
    name: name
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for name in tableNames: {
    parent: tableService
    name: '${tablePrefix}${name}'
  }
]

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-portcullis-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: logRetentionDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-portcullis-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Ingestion needs an Entra ID token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING): the connection
    // string alone cannot be used to send fake telemetry.
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-portcullis-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption exists only in some regions; set zoneRedundant where offered. Missed work is caught up by the converge timer.
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-portcullis-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    // checkov:skip=CKV_AZURE_17:Callers authenticate with Entra ID tokens through Easy Auth; requiring client certificates would lock out the CLI, SDKs and ticketing systems.
    // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero; queue and timer work tolerates a cold start and expiry is enforced by the timer's catch-up, so always-ready instances are a cost choice, not a safety one.
    // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service instance health check (the platform replaces instances); /api/health serves external probes.
    // checkov:skip=CKV_AZURE_222:Public by design: users and tools call the HTTP API from anywhere; Easy Auth (Entra ID) rejects unauthenticated calls before they reach the code.
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      cors: { allowedOrigins: [] }
      // Every setting the app reads (shared/settings.py, shared/observability.py); tests/infra checks it.
      // Not set here, on purpose: AzureWebJobsStorage (a connection string needs shared keys),
      // PORTCULLIS_ARM_CA_BUNDLE (emulator only), PORTCULLIS_JWT_* (the app validates tokens itself only
      // when Easy Auth is off; PORTCULLIS_JWT_CA_BUNDLE is for the local issuer's CA only), WEBSITE_AUTH_ENABLED (App Service sets it because authsettingsV2 is on).
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'AzureWebJobsStorage__blobServiceUri', value: storage.properties.primaryEndpoints.blob }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: storage.properties.primaryEndpoints.queue }
        { name: 'AzureWebJobsStorage__tableServiceUri', value: storage.properties.primaryEndpoints.table }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        { name: 'PORTCULLIS_ARM_ENDPOINT', value: environment().resourceManager }
        { name: 'PORTCULLIS_ARM_CREDENTIAL', value: 'default' }
        { name: 'PORTCULLIS_ARM_POLLING_INTERVAL', value: armPollingIntervalSeconds }
        { name: 'PORTCULLIS_REQUESTS_QUEUE', value: requestsQueueName }
        { name: 'PORTCULLIS_CONVERGE_QUEUE', value: convergeQueueName }
        { name: 'PORTCULLIS_TABLE_PREFIX', value: tablePrefix }
        { name: 'PORTCULLIS_RBAC_CACHE_SECONDS', value: string(rbacCacheSeconds) }
        { name: 'PORTCULLIS_MAX_VMS_PER_REQUEST', value: string(maxVmsPerRequest) }
        { name: 'PORTCULLIS_MAX_PORTS_PER_REQUEST', value: string(maxPortsPerRequest) }
        { name: 'PORTCULLIS_MAX_VMS_PER_POLICY', value: string(maxVmsPerPolicy) }
        { name: 'PORTCULLIS_MAX_BODY_BYTES', value: string(maxBodyBytes) }
        { name: 'PORTCULLIS_NSG_ALLOW_PRIORITIES', value: nsgAllowPriorities }
        { name: 'PORTCULLIS_NSG_DENY_PRIORITIES', value: nsgDenyPriorities }
        { name: 'PORTCULLIS_FIREWALL_NAT_COLLECTION_PRIORITY', value: string(firewallNatCollectionPriority) }
        { name: 'PORTCULLIS_FIREWALL_POLICY_RCG_PRIORITY', value: string(firewallPolicyRuleCollectionGroupPriority) }
        { name: 'PORTCULLIS_MAPPED_PORTS', value: mappedPorts }
        { name: 'PORTCULLIS_CONVERGE_LEASE_SECONDS', value: string(convergeLeaseSeconds) }
        { name: 'PORTCULLIS_RECONCILE_CONCURRENCY', value: string(reconcileConcurrency) }
        { name: 'PORTCULLIS_TRUSTED_PROXY_HOPS', value: string(trustedProxyHops) }
        { name: 'PORTCULLIS_QUEUE_TRUSTS_GROUP_CLAIMS', value: string(queueTrustsGroupClaims) }
        { name: 'PORTCULLIS_TRUSTED_APPROVAL_SENDERS', value: trustedApprovalSenders }
        { name: 'PORTCULLIS_EVENTS_QUEUE', value: eventsQueueName }
        { name: 'PORTCULLIS_WEBHOOK_URLS', value: webhookUrls }
        { name: 'PORTCULLIS_WEBHOOK_SECRET', value: webhookSecret }
        { name: 'PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT', value: eventGridTopicEndpoint }
        { name: 'PORTCULLIS_EVENTS_MAX_ATTEMPTS', value: string(eventsMaxAttempts) }
        { name: 'PORTCULLIS_EVENTS_RETRY_SECONDS', value: string(eventsRetrySeconds) }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    // The host must be able to reach its storage the moment it starts.
    blobDataRole
    queueDataRole
    tableDataRole
  ]
}

// Easy Auth: only callers with an Entra ID token for the app registration reach the code; the
// platform then sets WEBSITE_AUTH_ENABLED and the X-MS-CLIENT-PRINCIPAL* headers the app trusts.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    // checkov applies its checks for the web config section to every Microsoft.Web/sites/config; this is authsettingsV2:
    // checkov:skip=CKV_AZURE_13:Authentication is on: authsettingsV2 keeps the switch in properties.platform.enabled (true); the check reads the V1 schema's properties.enabled.
    // checkov:skip=CKV_AZURE_63:HTTP logging is a web section setting of Windows App Service; not part of authsettingsV2. Requests are traced in Application Insights.
    // checkov:skip=CKV_AZURE_65:Detailed error pages are a web section setting of Windows App Service; not part of authsettingsV2.
    // checkov:skip=CKV_AZURE_66:Failed request tracing is a web section setting of Windows App Service; not part of authsettingsV2.
    // checkov:skip=CKV_AZURE_80:No .NET Framework: a Python app; not part of authsettingsV2.
    // checkov:skip=CKV_AZURE_88:Azure Files mounts do not apply to Flex Consumption; not part of authsettingsV2.
    // checkov:skip=CKV_AZURE_222:Not part of authsettingsV2; the site public access is justified on the site resource.
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // The routes shared/api/routes.py marks public (tests/infra checks they agree): liveness, the
      // OpenAPI document, and the web page's static files, which must load signed out to offer the
      // sign-in link (/.auth/login/aad); every API call the page makes is still signed in.
      excludedPaths: [
        '/api/health'
        '/api/openapi.json'
        '/api/ui'
        '/api/ui/*'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: { enabled: false }
    }
  }
}

// Storage data roles, scoped to this account (used by nothing else):
// - Blob Data Contributor: the host's leases, keys and timer singleton, and the deployment package.
//   Microsoft documents Blob Data Owner; Owner adds only POSIX ACL/ownership changes on
//   hierarchical-namespace accounts, which this one is not.
// - Queue Data Contributor: queue triggers peek, dequeue, delete and poison messages; the app enqueues.
// - Table Data Contributor: grants, policies and the audit trail.
resource blobDataRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataContributor)
  scope: storage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}

resource queueDataRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageQueueDataContributor)
  scope: storage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
  }
}

resource tableDataRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageTableDataContributor)
  scope: storage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

// Telemetry ingestion with the managed identity (local auth is disabled on the component).
resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

// Ticketing systems may only add messages to the requests queue: nothing else in the account.
resource requestsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: requestsQueueName
}

resource requestSenderRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for principalId in requestSenderPrincipalIds: {
    name: guid(storage.id, requestsQueueName, principalId, storageQueueDataMessageSender)
    scope: requestsQueue
    properties: {
      principalId: principalId
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    }
    dependsOn: [ queues ]
  }
]

resource alertActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmailAddresses)) {
  name: 'ag-portcullis-${token}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'portcullis'
    enabled: true
    emailReceivers: [
      for (address, index) in alertEmailAddresses: {
        name: 'email-${index}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
  }
}

// Pages someone when converge keeps failing to close a rule whose grant has ended (invariant 1).
resource revokeFailingAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-portcullis-revoke-failing-${token}'
  location: location
  tags: tags
  properties: {
    displayName: 'Portcullis: a revoke keeps failing'
    description: 'A port that should be closed is still open because Azure refuses the change. See docs/deploy.md, "When the revoke alert fires".'
    severity: 1
    enabled: true
    scopes: [ insights.id ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "${revokeFailingEvent}" or tostring(customDimensions.event) == "${revokeFailingEvent}"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(alertEmailAddresses) ? [] : [ alertActionGroup.id ]
    }
  }
}

output functionAppName string = functionApp.name
output apiUrl string = 'https://${functionApp.properties.defaultHostName}/api'
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output storageAccountName string = storage.name
