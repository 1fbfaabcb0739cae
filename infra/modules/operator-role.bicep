// The custom role the app's managed identity holds on each managed subscription / resource group:
// exactly the Azure Resource Manager actions the app performs, no wildcards, no data actions.
// tests/infra/test_role_coverage.py fails when the app performs an action missing here;
// docs/deploy.md explains each action (tests/infra keeps that table equal to this list).
targetScope = 'subscription'

param environmentName string

@description('Subscriptions and resource groups the role may be assigned at.')
param assignableScopes array

var actions = [
  // Converge: read each NSG on a VM's path (subnet's and NIC's) with its rules and etag, then write
  // the NSG back in one If-Match PUT when our rules differ from the grants.
  'Microsoft.Network/networkSecurityGroups/read'
  'Microsoft.Network/networkSecurityGroups/write'
  // Single rules: read one of ours, write it (deny baseline, allow rules) as a child resource.
  'Microsoft.Network/networkSecurityGroups/securityRules/read'
  'Microsoft.Network/networkSecurityGroups/securityRules/write'
  // Classic Azure Firewall: DNAT rules live inside the firewall resource, read then PUT whole.
  'Microsoft.Network/azureFirewalls/read'
  'Microsoft.Network/azureFirewalls/write'
  // Firewall Policy: find the policy of a firewall, read and write our own rule collection group,
  // and delete it when no grant needs it any more (only ours: it carries the project's name).
  'Microsoft.Network/firewallPolicies/read'
  'Microsoft.Network/firewallPolicies/ruleCollectionGroups/read'
  'Microsoft.Network/firewallPolicies/ruleCollectionGroups/write'
  'Microsoft.Network/firewallPolicies/ruleCollectionGroups/delete'
  // Topology: VM -> NICs -> private IPs, subnet, NSGs; public IPs; the firewall subnet's prefix.
  'Microsoft.Compute/virtualMachines/read'
  'Microsoft.Network/networkInterfaces/read'
  'Microsoft.Network/publicIPAddresses/read'
  'Microsoft.Network/virtualNetworks/read'
  'Microsoft.Network/virtualNetworks/subnets/read'
  // Long-running writes: poll Azure-AsyncOperation (operations) and Location (operationResults) URLs.
  'Microsoft.Network/locations/operations/read'
  'Microsoft.Network/locations/operationResults/read'
  // Authorization of callers: does the requester hold the JIT initiate permission on the VM.
  'Microsoft.Authorization/roleAssignments/read'
  'Microsoft.Authorization/roleDefinitions/read'
  // Migration: import Defender for Cloud JIT policies (read only; Portcullis never changes Defender's).
  'Microsoft.Security/locations/jitNetworkAccessPolicies/read'
]

resource operatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'portcullis-operator', environmentName)
  properties: {
    roleName: 'Portcullis JIT operator (${environmentName})'
    description: 'Least privilege for the Portcullis function app: read VM topology, write its own NSG and firewall DNAT rules, read role assignments and Defender JIT policies.'
    type: 'CustomRole'
    permissions: [
      {
        actions: actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

output roleDefinitionId string = operatorRole.id
