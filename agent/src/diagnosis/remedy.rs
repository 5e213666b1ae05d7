//! Remedy texts of the catalogue, written for the operator of each PBX.
//!
//! Static texts per code, plus [`Remedy::for_nat`], which fills in the
//! public address and local network the evidence revealed so the operator
//! can paste the lines.

use std::borrow::Cow;
use std::net::IpAddr;

use super::{Code, Remedy};

const fn r(
    general: &'static str,
    pjsip: &'static str,
    freeswitch: &'static str,
    kamailio: &'static str,
) -> Remedy {
    Remedy {
        general: Cow::Borrowed(general),
        pjsip: Cow::Borrowed(pjsip),
        freeswitch: Cow::Borrowed(freeswitch),
        kamailio: Cow::Borrowed(kamailio),
    }
}

// Shared by the codes that mean "the credentials themselves are wrong".
const FS_GATEWAY_CREDS: &str = "in the gateway (sip_profiles/external/<gw>.xml) check \
     <param name=\"username\">, <param name=\"password\"> and, if the provider's auth id \
     differs from the number, <param name=\"auth-username\">; set <param name=\"realm\"> \
     only if the provider requires it; `sofia profile external rescan` then \
     `sofia status gateway <gw>`";
const KAM_UAC_CREDS: &str = "for uac_reg registrations check the uacreg row \
     (auth_username, auth_password, realm, auth_proxy); for uac_auth() check \
     modparam(\"uac\", \"credential\", \"username:realm:password\") - the realm must be \
     the one the provider challenges with";

pub(super) fn for_code(code: Code) -> Remedy {
    match code {
        Code::AuthRealmMismatch => r(
            "The client answered with credentials for another realm. Use the realm the \
             server challenges with, or leave the realm unset so the client takes it from \
             the challenge.",
            "in the type=auth section used by the registration's outbound_auth= (and the \
             endpoint's outbound_auth=), set realm= to the challenged realm or remove \
             realm= entirely (an empty realm matches any challenge); `pjsip show auth <id>`",
            "in the gateway set <param name=\"realm\" value=\"<challenged realm>\"/> or \
             remove the realm param so Sofia answers whatever realm is challenged",
            KAM_UAC_CREDS,
        ),
        Code::AuthNonceMismatch => r(
            "The client reused a nonce from an earlier challenge (or from another server) \
             instead of the one it was just given. Usually harmless if the next challenge \
             is answered correctly; persistent, it points to several servers behind one \
             address (DNS SRV / load balancer) that do not share nonce state.",
            "make sure the registration always reaches the same server: set \
             outbound_proxy=sip:<one server>\\;lr on the registration, or ask the \
             provider which host to use; update Asterisk if it answers old challenges",
            "pin the gateway to one server with <param name=\"outbound-proxy\" \
             value=\"<host>\"/> or <param name=\"proxy\">",
            "if Kamailio is the registrar behind a dispatcher, share nonces: same \
             modparam(\"auth\", \"secret\") on every node, or enable auth's nonce_count / \
             one-time-nonce only where all nodes share state",
        ),
        Code::AuthStaleNonce => r(
            "stale=true means the password was right but the nonce expired; a healthy \
             client re-sends at once with the new nonce. Only act if the client did not \
             recover or it happens on every request.",
            "nothing to configure if the next REGISTER succeeds; if stale loops persist, \
             check the host clock (NTP) and that expiration= is shorter than the \
             provider's nonce lifetime",
            "nothing to configure if the gateway recovers; otherwise check NTP and lower \
             <param name=\"expire-seconds\">",
            "as registrar: modparam(\"auth\", \"nonce_expire\", ...) longer than the \
             client's refresh interval; check NTP on all nodes",
        ),
        Code::AuthUriMismatch => r(
            "The digest uri must be the Request-URI of the request it authenticates (RFC \
             3261 22.4). Strict servers reject the mismatch even with the right password.",
            "set server_uri= on the registration to exactly the registrar URI the provider \
             expects (e.g. sip:sip.provider.example, without a port unless they use one) \
             and client_uri= to sip:<user>@<domain>",
            "set <param name=\"register-proxy\"> / <param name=\"realm\"> so the \
             REGISTER Request-URI and digest uri agree; avoid mixing host and IP",
            "if a proxy rewrites the Request-URI (rewritehostport, $ru), do it before \
             uac_auth() or after the challenge, not in between",
        ),
        Code::AuthAlgorithmMismatch => r(
            "The client answered with a digest algorithm or qop the server did not offer. \
             Offer an algorithm both sides support (MD5 is universal; SHA-256 needs RFC \
             8760 support on both ends).",
            "Asterisk 18.22/20.7/21.2 and later: in the type=auth section set \
             supported_algorithms_uac=md5,sha-256 to match what the provider challenges with; \
             older Asterisk answers MD5 only",
            "Sofia supports MD5 and, in recent versions, SHA-256; make sure the provider \
             offers MD5 or upgrade FreeSWITCH",
            "as registrar: www_challenge(\"$fd\", \"auth\") with a qop the clients \
             support, and modparam(\"auth\", \"algorithm\", \"MD5\") unless all clients do \
             SHA-256",
        ),
        Code::AuthRejected | Code::AuthChallengeLoop => r(
            "The server challenged, the client answered, and the server challenged again: \
             the username or password is wrong (or the credentials are for another \
             account). Compare them with the provider's portal, watch for trailing spaces \
             and for an auth id that differs from the phone number.",
            "in the type=auth section referenced by the registration's outbound_auth= \
             check username= (the provider's auth id) and password=; the \
             registration's client_uri= holds the AOR/number, which may differ; \
             `pjsip show registrations` then `pjsip send register <reg>`",
            FS_GATEWAY_CREDS,
            KAM_UAC_CREDS,
        ),
        Code::AuthPasswordMismatch => r(
            "With the password from the credentials file the client's response does not \
             compute: the client is configured with a different password (or username).",
            "fix password= in the type=auth section named by outbound_auth=, then \
             `pjsip send register <reg>`; if you use auth_type=md5 check md5_cred= was \
             made from username:realm:password",
            FS_GATEWAY_CREDS,
            KAM_UAC_CREDS,
        ),
        Code::AuthPasswordCorrect => r(
            "The configured password produces the client's response, so the password is \
             right. Nothing to change if the request succeeded; should it still be refused, \
             look at the realm, username, source address or account state on the \
             provider's side.",
            "no change to password=; check username=, realm= and whether the provider \
             allows registrations from this IP",
            "no change to the gateway password; check username/auth-username and the \
             provider's IP allow-list",
            "no change to the secret; check the username, realm and any IP checks \
             (allow_source_address, permissions module)",
        ),
        Code::AuthUsernameIsDid => r(
            "The auth username equals the phone number in the From/To (the AOR). Many \
             providers issue a separate auth id or SIP username; check the provider's \
             account page.",
            "in type=auth set username=<auth id from the provider>; keep the number in the \
             registration's client_uri=sip:<number>@<domain> and the endpoint's from_user=",
            "in the gateway set <param name=\"auth-username\" value=\"<auth id>\"/> and \
             keep <param name=\"username\"> / <param name=\"from-user\"> as the number",
            "in uacreg set auth_username to the auth id and l_username/r_username to the \
             number",
        ),
        Code::AuthForbiddenAfterAuth => r(
            "The server accepted the digest format but refused the request (403): the \
             account may be disabled, the source IP not allowed, the username unknown, or \
             the request must go through the provider's outbound proxy. Read the Warning \
             and reason phrase in the evidence.",
            "check username=/password= in type=auth, set outbound_proxy= if the provider \
             requires one, and ask the provider to allow this host's public IP",
            "check the gateway's username/password, set <param name=\"outbound-proxy\"> if \
             required, and the provider's IP allow-list",
            "check uacreg credentials and auth_proxy; as registrar look for \
             allow_source_address()/permissions rules rejecting the source",
        ),
        Code::NatPrivateContact
        | Code::NatContactPortMismatch
        | Code::NatRewrittenByPeer
        | Code::NatPrivateSdp => Remedy::for_nat(code, None, None),
        Code::NetNoResponse => r(
            "Requests were retransmitted and never answered. Check, in order: the \
             destination host and port (DNS SRV, outbound proxy), the remote firewall or \
             provider IP allow-list, the local firewall (see fw.local_drop), and whether \
             UDP is blocked where TCP would pass.",
            "check the registration's server_uri= and outbound_proxy=, the transport's \
             bind=, then `pjsip show registrations`; try transport=tcp if UDP is filtered",
            "check <param name=\"proxy\"> / <param name=\"register-proxy\"> and \
             register-transport of the gateway",
            "check the destination in t_relay()/uac_reg (r_domain, auth_proxy) and \
             `kamcmd tm.stats` for timeouts",
        ),
        Code::NetIcmpUnreachable => r(
            "The destination returned ICMP unreachable: nothing listens on that port, or \
             a firewall rejects (rather than drops) the traffic. Check the host, the port \
             and that the remote service is running.",
            "check server_uri=/outbound_proxy= host and port, and that the remote PBX is \
             up; for RTP, check rtp_symmetric=yes and the remote RTP range",
            "check the gateway proxy/port and the remote RTP port range",
            "check the destination URI/port and that the remote service listens",
        ),
        Code::FwLocalDrop => r(
            "This host's own netfilter rules dropped SIP or RTP before the PBX saw it. \
             Allow SIP (5060/udp and /tcp, 5061/tcp for TLS) and the RTP range from your \
             peers, e.g. `nft add rule inet filter input udp dport 5060 accept` and \
             `nft add rule inet filter input udp dport 10000-20000 accept`.",
            "the RTP range is rtpstart/rtpend in rtp.conf; open exactly that range",
            "the RTP range is rtp-start-port/rtp-end-port in switch.conf.xml; open it and \
             the sip_profiles ports (5060 internal, 5080 external)",
            "open the listen= ports and, with rtpengine, its --port-min/--port-max range",
        ),
        Code::RegRejected => r(
            "The registrar refused the REGISTER outright (no challenge). Typical causes: \
             wrong domain in the Request-URI/To, the source IP not allowed, an unknown \
             account, or the provider requires its outbound proxy. The Warning header and \
             reason phrase in the evidence say which.",
            "check server_uri= and client_uri= (domain), set outbound_proxy= if the \
             provider names one, and have the provider allow this public IP",
            "check <param name=\"realm\">, <param name=\"from-domain\">, \
             <param name=\"proxy\"> and <param name=\"outbound-proxy\">",
            "check r_domain/auth_proxy of uacreg; as registrar check domain and \
             permissions rules",
        ),
        Code::RegExpired => r(
            "The registration was not refreshed before it expired, so inbound calls will \
             fail until it is. The refresh was not sent or not answered; see the \
             net.*/fw.* findings around the expiry.",
            "check `pjsip show registrations`; lower expiration= and retry_interval=, set \
             max_retries= high and forbidden_retry_interval= so a failure is retried",
            "check `sofia status gateway <gw>`; set <param name=\"retry-seconds\"> and \
             <param name=\"expire-seconds\">",
            "check uac_reg timers (reg_timer_interval, reg_retry_interval)",
        ),
        Code::RegFlapping => r(
            "The registration alternates between registered and failed: often a NAT \
             binding timing out between refreshes, several registrations fighting over \
             one account, or a load-balanced provider with inconsistent state.",
            "set qualify_frequency= on the AOR (keeps NAT bindings open), expiration= \
             below the NAT timeout, and make sure only one device registers this account",
            "enable <param name=\"ping\"> on the gateway and shorten expire-seconds",
            "use nathelper keepalives (nat_keepalive_interval) and check for duplicate \
             registrations of the AOR",
        ),
        Code::MediaNoRtp => r(
            "The call was answered but no RTP arrived. Check firewalls for the RTP range \
             and the SDP addresses (see nat.private_sdp).",
            "set external_media_address=, local_net= and rtp_symmetric=yes, \
             direct_media=no; open rtpstart-rtpend from rtp.conf",
            "set ext-rtp-ip and open rtp-start-port..rtp-end-port",
            "anchor media with rtpengine (rtpengine_manage()) when endpoints are behind NAT",
        ),
        Code::MediaOneWay => r(
            "RTP flows one way only: the other side sends to an address it cannot reach \
             (private SDP address, NAT, firewall on one direction).",
            "set external_media_address= and local_net= on the transport, \
             rtp_symmetric=yes, force_rport=yes, rewrite_contact=yes, direct_media=no",
            "set ext-rtp-ip (autonat: or the public IP) and local-network-acl; consider \
             NDLB-force-rport",
            "rtpengine_manage() with the right direction flags; fix_nated_sdp() only as a \
             last resort",
        ),
        Code::MediaQuality => r(
            "Loss or jitter beyond what voice tolerates. Check the link (bandwidth, \
             Wi-Fi, congestion) and QoS marking (DSCP EF for RTP).",
            "set tos_audio=ef / cos_audio=5 on the endpoint; prefer a codec with PLC",
            "set rtp-dscp / enable jitterbuffer (jitterbuffer_msec)",
            "check rtpengine's host load and the network path",
        ),
        Code::CallInboundBlocked => r(
            "Registration succeeds but calls to the registered contact fail. Read the reason: \
             never answered = the INVITE does not reach the PBX (the provider sends it to the \
             Contact or to the address the REGISTER came from: the NAT binding must stay open \
             and the firewall must accept SIP from the provider's IPs, not only answers to \
             REGISTER); dropped locally = this host's firewall (allow udp/tcp 5060 from the \
             provider's networks) or nothing listens on the Contact's port; a 403/404/480/488 \
             = the PBX got the call and refused it (ACL, DID routing, codecs).",
            "unanswered: set rewrite_contact=yes and qualify_frequency= (keeps the NAT \
             binding open), external_signaling_address=/local_net= on the transport, and make \
             sure the transport binds the Contact's port; 403: add the provider's IPs to a \
             type=identify section (match=) and check acl=/permit=; 404/484: the endpoint's \
             context= needs an extension for the DID as the provider sends it (E.164 or not); \
             480: the DID routes to an extension with no registered device; 488: allow= a \
             codec the provider offers (ulaw/alaw)",
            "unanswered: set ext-sip-ip/ext-rtp-ip on the profile and <param \
             name=\"ping\"> on the gateway; 403: add the provider to the domains/acl.conf \
             list the profile's apply-inbound-acl uses; 404: route the DID in the public \
             dialplan (extension-in-contact helps matching the gateway); 488: \
             inbound-codec-prefs must share a codec with the provider",
            "as registrar/proxy: check that lookup(\"location\") finds the contact, that \
             fix_nated_register() stored the received address for NATed UAs and that \
             nathelper keepalives keep the pinhole open; as PBX front end: allow the \
             provider's IPs in permissions (allow_source_address())",
        ),
    }
}

impl Remedy {
    /// For a right password answered with non-conformant digest arithmetic
    /// (see `analysis::digest::Deviation`): fix the client, or make the
    /// server ask for something the client gets right (`workaround`).
    pub fn for_client_deviation(workaround: &str) -> Remedy {
        Remedy {
            general: Cow::Owned(format!(
                "The password is right; the client's digest implementation is not. Upgrade or \
                 reconfigure the client, or {workaround}."
            )),
            pjsip: Cow::Owned(format!(
                "as server: {workaround} (Asterisk 18.22/20.7/21.2+: supported_algorithms_uas= in \
                 the type=auth section); as client: upgrade Asterisk"
            )),
            freeswitch: Cow::Owned(format!(
                "as client: upgrade FreeSWITCH/Sofia; as server there is no per-profile knob, so \
                 put a proxy in front or {workaround} upstream"
            )),
            kamailio: Cow::Owned(format!(
                "as registrar: {workaround} (www_challenge() flags and modparam(\"auth\", \
                 \"algorithm\", ...))"
            )),
        }
    }

    /// NAT remedy for `code`, naming the public address the peer saw and the
    /// local network the private address belongs to when they are known.
    pub fn for_nat(code: Code, public: Option<IpAddr>, local_net: Option<&str>) -> Remedy {
        let ext = public.map_or_else(|| "<public IP>".to_owned(), |ip| ip.to_string());
        let net = local_net.unwrap_or("<your LAN, e.g. 192.168.0.0/16>");
        let media_only = code == Code::NatPrivateSdp;
        let general = if media_only {
            "The SDP tells the peer to send audio to an address it cannot reach, so audio \
             will be one-way or missing. Advertise the public address in SDP or anchor \
             media on a relay."
                .to_owned()
        } else {
            "A NAT sits between this host and its peer. Advertise the public address (or \
             let the peer fix it from the source address), keep the NAT binding open, \
             and make sure inbound calls reach the address in Contact."
                .to_owned()
        };
        let pjsip = if media_only {
            format!(
                "on the transport: local_net={net}, external_media_address={ext}; on the \
                 endpoint: rtp_symmetric=yes, direct_media=no"
            )
        } else {
            format!(
                "on the transport: local_net={net}, external_signaling_address={ext}, \
                 external_media_address={ext}; on the endpoint: rewrite_contact=yes, \
                 force_rport=yes, rtp_symmetric=yes, direct_media=no; on the AOR: \
                 qualify_frequency=30"
            )
        };
        let freeswitch = if media_only {
            format!(
                "in the SIP profile: <param name=\"ext-rtp-ip\" value=\"{ext}\"/> (or \
                 autonat:{ext}) and <param name=\"local-network-acl\" value=\"localnet.auto\"/>"
            )
        } else {
            format!(
                "in the SIP profile: <param name=\"ext-sip-ip\" value=\"{ext}\"/>, \
                 <param name=\"ext-rtp-ip\" value=\"{ext}\"/>, \
                 <param name=\"NDLB-force-rport\" value=\"true\"/>, \
                 <param name=\"aggressive-nat-detection\" value=\"true\"/>"
            )
        };
        let kamailio = if media_only {
            "anchor media with rtpengine: rtpengine_manage(\"replace-origin \
             replace-session-connection\") for NATed endpoints"
                .to_owned()
        } else {
            format!(
                "loadmodule \"nathelper.so\"; force_rport() on requests; if \
                 (nat_uac_test(\"19\")) {{ fix_nated_contact(); }} and for REGISTER \
                 fix_nated_register() with modparam(\"registrar\", \"received_avp\", ...); \
                 rtpengine_manage() for media; when Kamailio itself is behind NAT: \
                 listen=udp:<private>:5060 advertise {ext}:5060"
            )
        };
        Remedy {
            general: Cow::Owned(general),
            pjsip: Cow::Owned(pjsip),
            freeswitch: Cow::Owned(freeswitch),
            kamailio: Cow::Owned(kamailio),
        }
    }
}
