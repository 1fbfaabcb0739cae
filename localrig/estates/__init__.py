"""One test kit for building estates in the ARM emulator, used by `make up`'s sample, the demo, the
benchmarks and the tests, so an id or a resource body is spelled once:

- `ids`: resource ids inside one resource group (`ResourceGroupIds`, mixed into every estate);
- `bodies`: the ARM JSON of the resources an estate holds (NSG rules, VNets, NICs, VMs, public IPs,
  classic firewalls, Firewall Policies) and of a Defender JIT policy;
- `sample`: the fixed sample estate (`Estate`: vm-web, vm-db, vm-app, vm-ops; NSGs, a classic firewall,
  a Firewall Policy) and its JIT policy, which the demo, the integration tests and `make up` share;
- `scale`: generated estates of any size (`ScaleEstate`) for the benchmarks;
- `sdk`: a small estate built through the real azure-mgmt-network SDK, for the emulator's tests;
- `roles`: the dev users' role assignments in the emulator's Microsoft.Authorization;
- `snapshot`: what an estate's network looks like, for comparing before and after a grant;
- `seed`: `make up`'s seed of the sample estate in a subscription of its own.

Estates are written through the emulator's bulk admin endpoint (`POST /_emulator/seed`), except the
SDK one; policies go through the app's API, so they pass its validation.
"""
