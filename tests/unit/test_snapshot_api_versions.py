"""The snapshot lists with raw requests (no SDK models); its api-versions must be the pinned SDKs'."""

from __future__ import annotations

from shared.enforcement.snapshot import COMPUTE_API_VERSION, NETWORK_API_VERSION


def test_snapshot_uses_the_api_versions_of_the_pinned_sdks() -> None:
    from azure.mgmt.compute.operations import _operations as compute_ops
    from azure.mgmt.network.operations import _operations as network_ops

    nsgs = network_ops.build_network_security_groups_list_all_request(subscription_id="s").url
    vms = compute_ops.build_virtual_machines_list_all_request(subscription_id="s").url
    assert nsgs.endswith(f"api-version={NETWORK_API_VERSION}")
    assert vms.endswith(f"api-version={COMPUTE_API_VERSION}")
