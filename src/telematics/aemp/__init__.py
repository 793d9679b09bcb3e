"""ISO 15143-3 (AEMP 2.0): the fleet feed fleet software reads, and its OAuth 2.0 clients.

A capability above `api/` (docs/aemp.md):

* `elements`   pure: the data elements, their vendor aliases, values of one snapshot or series
* `xmltext`    pure: text the XML 1.0 character set can hold, UTC instants as the standard writes
* `document`   pure: snapshot and series pages as XML (ElementTree) or JSON, with their Links
* `ratelimit`  pure: the token bucket per client
* `store`      the SQL of the feed: fleet pages, one machine, time series
* `clients`    the SQL of OAuth clients and their access tokens (hashes only)
* `summary_elements` the elements that come from work summaries (`summary_slots`)
* `auth`       who calls the feed (an AEMP client or a product token), scoped and rate limited
* `feed`       the `/aemp` routes; `oauth` the token endpoint; `admin` `/v1/aemp/clients`

Pulling other brands' feeds:

* `dialects`   pure: a fleet page of any feed, XML or JSON, in the dialects real feeds speak
* `sources`    the SQL of sources and of which registry machine each pulled machine is
* `puller`     one poll of a source (HTTP, paging, mapping, readings via the ingest pipeline),
               and the background job
* `sources_admin` `/v1/aemp/sources`
"""
