// Every file of this target sees the node harness, node processes and the shared test helpers.
@_exported import HeraldNodeTestSupport
