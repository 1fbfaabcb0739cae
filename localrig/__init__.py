"""Start and stop the local stack (Azurite, the ARM emulator, the local Functions host).

Used by the tests' fixtures, `make up` and `make demo`, so there is one way to run each service;
`localrig.estates` builds what runs on it (estates, roles, `make up`'s sample) and `localrig.appclient`
calls the app's API as a dev user.
"""
