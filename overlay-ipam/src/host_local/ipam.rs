//! In-process `host-local` behind [`overlay_cni::ipam::Ipam`].

use overlay_cni::config::GcAttachment;
use overlay_cni::ipam::{Ipam, Lease, StaleAttachment, Teardown};
use overlay_cni::result::{IpConfig, Route};
use overlay_cni::{CniError, CniResult, ErrorCode, Request};

use super::{AllocError, Config, ConfigError, StoreError, display_ips};

/// The plugin-specific error code [`HostLocalIpam`] uses by default when it
/// cannot allocate (range full, duplicate attachment, requested address
/// unavailable) or finds no address for `CHECK`.
pub const ALLOC_ERROR_CODE: u32 = 103;

/// `host-local` in-process, for a plugin: [`Config`]'s operations on the
/// reference plugin's files, with the reference plugin's results and
/// messages, as an [`Ipam`].
///
/// Errors: a configuration the reference would refuse is code 7; a store
/// that cannot be read or written is code 5; an allocation that cannot be
/// made is [`ALLOC_ERROR_CODE`] (see [`HostLocalIpam::alloc_error_code`]);
/// `STATUS` fails with code 50 when the store is not writable or a range
/// set is full. `GC` releases each stale attachment only when the plugin's
/// teardown of it succeeded, under the store's lock.
///
/// ```
/// use overlay_cni::ipam::Ipam;
/// use overlay_cni::plugin::{CniEnv, Command};
/// use overlay_cni::Request;
/// use overlay_ipam::host_local::HostLocalIpam;
///
/// let dir = std::env::temp_dir().join(format!("ipam-plugin-doc-{}", std::process::id()));
/// let conf = format!(
///     r#"{{"cniVersion":"1.0.0","name":"pods","type":"bridge",
///          "ipam":{{"type":"host-local","dataDir":"{}","subnet":"198.51.100.0/24"}}}}"#,
///     dir.display()
/// );
/// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
/// let req = Request::new(Command::Add, env, conf.as_bytes()).unwrap();
/// let ipam = HostLocalIpam::from_request(&req).unwrap();
///
/// // A failed ADD: the lease is dropped and the address released.
/// drop(ipam.add(&req).unwrap());
/// assert!(ipam.check(&req).is_err());
///
/// let result = ipam.add(&req).unwrap().commit();
/// assert_eq!(result.ips[0].address.to_string(), "198.51.100.3/24");
/// ipam.check(&req).unwrap();
/// ipam.del(&req).unwrap();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HostLocalIpam {
    config: Config,
    alloc_error_code: u32,
}

fn config_error(e: ConfigError) -> CniError {
    CniError::new(
        ErrorCode::InvalidNetworkConfig,
        "invalid host-local IPAM configuration",
    )
    .with_details(e.to_string())
}

fn store_error(e: StoreError) -> CniError {
    CniError::new(ErrorCode::IoFailure, format!("host-local IPAM store: {e}"))
}

impl HostLocalIpam {
    /// The request's `host-local` configuration (its `ipam` object and
    /// `CNI_ARGS`); code 7 when the reference plugin would refuse it.
    pub fn from_request(req: &Request) -> Result<Self, CniError> {
        Config::from_network_config(&req.config_bytes, &req.env.args)
            .map(Self::new)
            .map_err(config_error)
    }

    /// IPAM from a parsed configuration.
    ///
    /// ```
    /// use overlay_ipam::host_local::{Config, HostLocalIpam};
    ///
    /// let config = Config::from_network_config(
    ///     br#"{"name":"pods","ipam":{"subnet":"2001:db8::/64"}}"#, "").unwrap();
    /// let ipam = HostLocalIpam::new(config).alloc_error_code(120);
    /// assert_eq!(ipam.config().network, "pods");
    /// ```
    pub fn new(config: Config) -> Self {
        HostLocalIpam {
            config,
            alloc_error_code: ALLOC_ERROR_CODE,
        }
    }

    /// Use `code` (a plugin-specific code, 100 or more) for allocation
    /// failures instead of [`ALLOC_ERROR_CODE`].
    pub fn alloc_error_code(mut self, code: u32) -> Self {
        self.alloc_error_code = code;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The result `host-local` prints for an allocation, in `version`.
    fn result(req: &Request, got: super::Allocation) -> CniResult {
        let mut result = CniResult::new(req.version);
        result.ips = got
            .ips
            .iter()
            .map(|ip| IpConfig::new(ip.address).with_gateway(ip.gateway))
            .collect();
        result.routes = got
            .routes
            .iter()
            .map(|r| match r.gw {
                Some(gw) => Route::new(r.dst).with_gw(gw),
                None => Route::new(r.dst),
            })
            .collect();
        result.dns = got.dns;
        result
    }
}

impl Ipam for HostLocalIpam {
    fn add(&self, req: &Request) -> Result<Lease, CniError> {
        let got = self
            .config
            .allocate(req.container_id(), req.ifname())
            .map_err(|e| match e {
                AllocError::Store(e) => store_error(e),
                other => CniError::plugin(self.alloc_error_code, other.to_string()),
            })?;
        let config = self.config.clone();
        let (container_id, ifname) = (req.container_id().to_owned(), req.ifname().to_owned());
        Ok(Lease::new(Self::result(req, got), move || {
            let _ = config.release(&container_id, &ifname);
        }))
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        self.config
            .release(req.container_id(), req.ifname())
            .map(drop)
            .map_err(store_error)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        match self.config.check(req.container_id(), req.ifname()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(CniError::plugin(
                self.alloc_error_code,
                format!(
                    "host-local: failed to find address added by container {}",
                    req.container_id()
                ),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Release the stale attachments whole: `teardown` first, the
    /// reservation only when it succeeded. When some could not be torn
    /// down, fails with the first teardown's code and every kept
    /// attachment in the details.
    fn gc(
        &self,
        _req: &Request,
        valid: &[GcAttachment],
        teardown: &mut Teardown<'_>,
    ) -> Result<(), CniError> {
        let valid: Vec<(&str, &str)> = valid
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        let outcome = self
            .config
            .gc_with(&valid, |owner, ips| {
                teardown(&StaleAttachment::new(
                    &owner.container_id,
                    owner.ifname.as_deref(),
                    ips,
                ))
            })
            .map_err(store_error)?;
        let Some((_, _, first)) = outcome.kept.first() else {
            return Ok(());
        };
        let kept: Vec<String> = outcome
            .kept
            .iter()
            .map(|(owner, ips, e)| {
                format!(
                    "{}/{} ({}): {}",
                    owner.container_id,
                    owner.ifname.as_deref().unwrap_or("?"),
                    display_ips(ips),
                    e.msg
                )
            })
            .collect();
        Err(CniError::new(
            first.code,
            format!(
                "GC kept {} stale attachment(s) it could not tear down whole; their addresses stay reserved",
                kept.len()
            ),
        )
        .with_details(kept.join("; ")))
    }

    fn status(&self, _req: &Request) -> Result<(), CniError> {
        let unavailable = |msg: String| CniError::new(ErrorCode::PluginNotAvailable, msg);
        let unusable =
            |e: StoreError| unavailable(format!("host-local IPAM store is not usable: {e}"));
        self.config.status().map_err(unusable)?;
        match self.config.full_range_set() {
            Ok(None) => Ok(()),
            Ok(Some(index)) => Err(unavailable(format!(
                "host-local IPAM has no free address in range set {index} ({}): ADD cannot succeed",
                self.config
                    .ranges
                    .get(index)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ))),
            Err(e) => Err(unusable(e)),
        }
    }

    fn has_ipv6_range(&self) -> bool {
        self.config.ranges.iter().any(|set| !set.is_ipv4())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_cni::plugin::{CniEnv, Command};

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn request(dir: &Dir, command: Command, cid: &str, extra: &str) -> Request {
        let conf = format!(
            r#"{{"cniVersion":"1.1.0","name":"pods","type":"bridge",
                 "ipam":{{"type":"host-local","dataDir":"{}","subnet":"198.51.100.0/30"{extra}}}}}"#,
            dir.0.display()
        );
        let env = CniEnv {
            container_id: cid.into(),
            ifname: "eth0".into(),
            ..CniEnv::default()
        };
        Request::new(command, env, conf.as_bytes()).expect("valid request")
    }

    fn dir(name: &str) -> Dir {
        Dir(std::env::temp_dir().join(format!("ipam-trait-{name}-{}", std::process::id())))
    }

    #[test]
    fn full_range_is_the_alloc_code_and_status_50() {
        let d = dir("full");
        let req = request(&d, Command::Add, "a", "");
        let ipam = HostLocalIpam::from_request(&req).expect("valid");
        ipam.status(&req).expect("ready");
        let _kept = ipam.add(&req).expect("one address").commit();
        let err = ipam.add(&request(&d, Command::Add, "b", "")).unwrap_err();
        assert_eq!(err.code, ErrorCode::Other(ALLOC_ERROR_CODE), "{err:?}");
        let err = ipam.status(&req).unwrap_err();
        assert_eq!(err.code, ErrorCode::PluginNotAvailable, "{err:?}");
        assert!(
            err.msg.contains("no free address in range set 0"),
            "{err:?}"
        );
    }

    #[test]
    fn gc_releases_only_what_teardown_removed_and_reports_the_rest() {
        let d = dir("gc");
        // /30 has one address: use a wider network for three attachments.
        let wide = |cid: &str| {
            let r = request(&d, Command::Add, cid, "");
            let text = String::from_utf8(r.config_bytes.clone())
                .expect("utf-8")
                .replace("/30", "/28");
            Request::new(Command::Add, r.env.clone(), text.as_bytes()).expect("valid")
        };
        let ipam = HostLocalIpam::from_request(&wide("x")).expect("valid");
        for cid in ["live", "gone", "stuck"] {
            let _ = ipam.add(&wide(cid)).expect("allocates").commit();
        }
        let valid = [GcAttachment {
            container_id: "live".into(),
            ifname: "eth0".into(),
        }];
        let mut seen = Vec::new();
        let err = ipam
            .gc(&wide("x"), &valid, &mut |stale: &StaleAttachment<'_>| {
                seen.push((stale.container_id.to_owned(), stale.ips.len()));
                match stale.container_id {
                    "stuck" => Err(CniError::plugin(100, "cannot delete its veth")),
                    _ => Ok(()),
                }
            })
            .unwrap_err();
        assert_eq!(seen, [("gone".to_owned(), 1), ("stuck".to_owned(), 1)]);
        assert_eq!(err.code, ErrorCode::Other(100));
        assert!(
            err.msg.starts_with("GC kept 1 stale attachment(s)"),
            "{err:?}"
        );
        ipam.check(&wide("stuck")).expect("kept");
        ipam.check(&wide("live")).expect("valid");
        assert!(ipam.check(&wide("gone")).is_err());
    }

    #[test]
    fn bad_configuration_is_code_7() {
        let d = dir("bad");
        let mut req = request(&d, Command::Add, "a", "");
        req.env.args = "K8S_POD_NAME=web".into();
        let err = HostLocalIpam::from_request(&req).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidNetworkConfig);
        assert_eq!(err.details, r#"ARGS: unknown args ["K8S_POD_NAME=web"]"#);
    }
}
