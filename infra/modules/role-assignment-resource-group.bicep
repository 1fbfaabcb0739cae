// Assigns the Portcullis operator role to the app's managed identity on one managed resource group.
targetScope = 'resourceGroup'

param principalId string
param roleDefinitionId string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
    description: 'Portcullis: just-in-time VM access (NSG and firewall DNAT rules)'
  }
}
