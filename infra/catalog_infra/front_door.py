"""FrontDoor: one name for the service in every region, through a global external Application Load Balancer.

The request path: the client resolves DOMAIN to the reserved global address; the forwarding rule on 443 hands
the connection to the HTTPS proxy, which terminates TLS with the Google-managed certificate and speaks HTTP/2
with the client; the URL map sends every request to the one backend service, whose Cloud Armor policy denies
listed ranges and rate-limits each client IP; the backend service picks a region's serverless NEG (the
nearest healthy one) and speaks HTTP/2 to that region's Cloud Run service, which routes to its revisions.

Failover is Cloud Run's service health (cloud.google.com/run/docs/configuring/configure-service-health): each
region reports itself unhealthy to its serverless NEG when its instances fail their readiness probes, and the
load balancer sends new requests to the other regions until it recovers. Serverless NEGs take no health
checks of their own, and service health refuses URL masks and tags on them: each NEG names its service only.

Releases: with the front door, the services admit only the load balancer, so the run.app tag URL of a
candidate refuses the release's checks from the internet. Each region also gets a NEG on the service's
`candidate` tag behind a backend of its own, and the URL map sends a request carrying the header
`x-catalog-candidate: REGION` there; no other request reaches it. The release checks each region's candidate
through the domain with that header (docs/releases.md). The candidate backends take the same Cloud Armor
policy, and the services' invoker check still applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

REQUIRED_APIS = ("compute.googleapis.com",)

# The global external Application Load Balancer (Envoy-based): Cloud Run's service health fails over for it,
# not for the classic one ("EXTERNAL").
LOAD_BALANCING_SCHEME = "EXTERNAL_MANAGED"
# gRPC through an Application Load Balancer to Cloud Run is HTTP/2 to the backend: Google documents HTTP2 as
# the backend service protocol for gRPC (cloud.google.com/load-balancing/docs/backend-service, "Protocol to
# the backends"; the service itself speaks h2c, cloud.google.com/run/docs/configuring/http2). GRPC is only
# for Traffic Director (Cloud Service Mesh) backends; HTTP and HTTPS reach the backend as HTTP/1.1, which
# gRPC cannot use (no trailers, no streams).
BACKEND_PROTOCOL = "HTTP2"

# Cloud Armor: lower numbers are evaluated first. The deny list comes before the rate limit, so a denied
# range never counts against (or earns) a ban; the default rule, last, lets the rest through.
DENY_PRIORITY = 1000
RATE_LIMIT_PRIORITY = 2000
DEFAULT_RULE_PRIORITY = 2147483647
# A SRC_IPS_V1 match takes at most 10 ranges: the deny list becomes one rule per 10.
RANGES_PER_RULE = 10
# 429 reaches a gRPC client as UNAVAILABLE (grpc/doc/http-grpc-status-mapping.md), which it may retry with
# backoff; 403 as PERMISSION_DENIED, which it must not retry.
RATE_LIMITED = "deny(429)"
DENIED = "deny(403)"
# The request header whose value (a region) routes a request to that region's candidate revision.
CANDIDATE_HEADER = "x-catalog-candidate"
# The URL map's one path matcher: the release routes, then everything else to the serving backend.
PATH_MATCHER = "release"


@dataclass(frozen=True)
class FrontDoorArgs:
    """The domain, the Cloud Run service of each region behind it, and the Cloud Armor thresholds.

    `services` maps each region to its Cloud Run service's name (the same name in every region works: a NEG
    is regional). A client IP over `rate_limit_requests` per `rate_limit_interval_seconds` is answered 429
    and banned: it stays refused until its rate is back under the limit and `ban_duration_seconds` have
    passed. `denied_ip_ranges` are refused outright.
    """

    project: str
    domain: str
    services: Mapping[str, pulumi.Input[str]]
    # The tag of the revision a release checks (revisions.CANDIDATE): each region's gets a route of its own.
    candidate_tag: str
    rate_limit_requests: int
    rate_limit_interval_seconds: int
    ban_duration_seconds: int
    denied_ip_ranges: Sequence[str] = ()
    depends_on: Sequence[pulumi.Resource] = ()


def _match(ranges: Sequence[str]) -> gcp.compute.SecurityPolicyRuleMatchArgs:
    return gcp.compute.SecurityPolicyRuleMatchArgs(
        versioned_expr="SRC_IPS_V1",
        config=gcp.compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=list(ranges)),
    )


def security_rules(args: FrontDoorArgs) -> list[gcp.compute.SecurityPolicyRuleArgs]:
    """The deny list, the per-IP rate-based ban and the default allow rule, in the order they run.

    No preconfigured WAF rule sets (`evaluatePreconfiguredWaf(...)`): they parse request bodies as text
    (SQL injection, XSS, ... signatures), and a gRPC body is length-prefixed binary protobuf, in which any
    byte sequence can occur: they would refuse ordinary calls and protect nothing.
    """
    ranges = list(args.denied_ip_ranges)
    deny = [
        gcp.compute.SecurityPolicyRuleArgs(
            priority=DENY_PRIORITY + index,
            action=DENIED,
            match=_match(ranges[start : start + RANGES_PER_RULE]),
            description="Denied IP ranges (config deniedIpRanges)",
        )
        for index, start in enumerate(range(0, len(ranges), RANGES_PER_RULE))
    ]
    rate_limit = gcp.compute.SecurityPolicyRuleArgs(
        priority=RATE_LIMIT_PRIORITY,
        action="rate_based_ban",
        match=_match(["*"]),
        description="Per-client-IP rate limit with a ban",
        rate_limit_options=gcp.compute.SecurityPolicyRuleRateLimitOptionsArgs(
            # Behind this load balancer the connection's source is the client itself.
            enforce_on_key="IP",
            conform_action="allow",
            exceed_action=RATE_LIMITED,
            rate_limit_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                count=args.rate_limit_requests,
                interval_sec=args.rate_limit_interval_seconds,
            ),
            ban_duration_sec=args.ban_duration_seconds,
        ),
    )
    default = gcp.compute.SecurityPolicyRuleArgs(
        priority=DEFAULT_RULE_PRIORITY,
        action="allow",
        match=_match(["*"]),
        # Declared, not left to the API: it adds one anyway, and an undeclared one is a diff in every preview.
        description="Default: allow",
    )
    return [*deny, rate_limit, default]


class FrontDoor(pulumi.ComponentResource):
    """A NEG per region, the HTTP/2 backend with Cloud Armor, URL map, certificate, proxy, address, rule."""

    address: pulumi.Output[str]
    target: str
    url: str
    candidate_header: str
    certificate: pulumi.Output[str]

    def __init__(self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("catalog:index:FrontDoor", name, None, opts)
        if not args.services:
            raise ValueError("a front door needs at least one region's service behind it")
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        groups = [
            gcp.compute.RegionNetworkEndpointGroup(
                f"{name}-neg-{region}",
                project=args.project,
                region=region,
                network_endpoint_type="SERVERLESS",
                cloud_run=gcp.compute.RegionNetworkEndpointGroupCloudRunArgs(service=service),
                opts=child,
            )
            for region, service in args.services.items()
        ]
        policy = gcp.compute.SecurityPolicy(
            f"{name}-armor",
            project=args.project,
            type="CLOUD_ARMOR",
            description=f"Rate limit and deny list in front of {args.domain}",
            rules=security_rules(args),
            opts=child,
        )
        backend = self._backend(f"{name}-backend", args, policy, groups, child)
        candidates = {
            region: self._backend(
                f"{name}-candidate-{region}",
                args,
                policy,
                [
                    gcp.compute.RegionNetworkEndpointGroup(
                        f"{name}-candidate-neg-{region}",
                        project=args.project,
                        region=region,
                        network_endpoint_type="SERVERLESS",
                        cloud_run=gcp.compute.RegionNetworkEndpointGroupCloudRunArgs(
                            service=service, tag=args.candidate_tag
                        ),
                        opts=child,
                    )
                ],
                child,
            )
            for region, service in args.services.items()
        }
        url_map = gcp.compute.URLMap(
            f"{name}-urls",
            project=args.project,
            default_service=backend.id,
            host_rules=[gcp.compute.URLMapHostRuleArgs(hosts=["*"], path_matcher=PATH_MATCHER)],
            path_matchers=[
                gcp.compute.URLMapPathMatcherArgs(
                    name=PATH_MATCHER,
                    default_service=backend.id,
                    route_rules=[
                        gcp.compute.URLMapPathMatcherRouteRuleArgs(
                            priority=priority,
                            match_rules=[
                                gcp.compute.URLMapPathMatcherRouteRuleMatchRuleArgs(
                                    prefix_match="/",
                                    header_matches=[
                                        gcp.compute.URLMapPathMatcherRouteRuleMatchRuleHeaderMatchArgs(
                                            header_name=CANDIDATE_HEADER, exact_match=region
                                        )
                                    ],
                                )
                            ],
                            service=candidate.id,
                        )
                        for priority, (region, candidate) in enumerate(candidates.items(), start=1)
                    ],
                )
            ],
            opts=child,
        )
        # Provisioned once DOMAIN's A record points at the address; until then TLS handshakes fail. Names are
        # generated, so a new domain gets a new certificate next to the old one before the proxy switches.
        certificate = gcp.compute.ManagedSslCertificate(
            f"{name}-cert",
            project=args.project,
            managed=gcp.compute.ManagedSslCertificateManagedArgs(domains=[args.domain]),
            opts=child,
        )
        proxy = gcp.compute.TargetHttpsProxy(
            f"{name}-proxy",
            project=args.project,
            url_map=url_map.id,
            ssl_certificates=[certificate.id],
            opts=child,
        )
        address = gcp.compute.GlobalAddress(
            f"{name}-address",
            project=args.project,
            address_type="EXTERNAL",
            ip_version="IPV4",
            opts=child,
        )
        gcp.compute.GlobalForwardingRule(
            f"{name}-https",
            project=args.project,
            load_balancing_scheme=LOAD_BALANCING_SCHEME,
            ip_protocol="TCP",
            port_range="443",
            ip_address=address.id,
            target=proxy.id,
            opts=child,
        )

        self.address = address.address
        self.target = f"{args.domain}:443"
        self.url = f"https://{args.domain}"
        # What a release sends to reach a region's candidate: this header, with the region as its value.
        self.candidate_header = CANDIDATE_HEADER
        self.certificate = certificate.name
        self.register_outputs(
            {
                "address": self.address,
                "target": self.target,
                "url": self.url,
                "candidateHeader": self.candidate_header,
                "certificate": self.certificate,
            }
        )

    @staticmethod
    def _backend(
        name: str,
        args: FrontDoorArgs,
        policy: gcp.compute.SecurityPolicy,
        groups: Sequence[gcp.compute.RegionNetworkEndpointGroup],
        opts: pulumi.ResourceOptions,
    ) -> gcp.compute.BackendService:
        """An HTTP/2 backend over `groups` behind the Cloud Armor policy, every request logged."""
        return gcp.compute.BackendService(
            name,
            project=args.project,
            load_balancing_scheme=LOAD_BALANCING_SCHEME,
            protocol=BACKEND_PROTOCOL,
            backends=[gcp.compute.BackendServiceBackendArgs(group=group.id) for group in groups],
            security_policy=policy.id,
            # Every request logged with the Cloud Armor rule that matched it: how a ban shows up.
            log_config=gcp.compute.BackendServiceLogConfigArgs(enable=True, sample_rate=1.0),
            opts=opts,
        )
