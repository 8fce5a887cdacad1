//! What the TLS clients (POP3, and the object store's HTTPS) share: one crypto provider and
//! the system's trust store.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;

/// rustls with `ring`, which builds without cmake.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The platform's trust store (rustls-platform-verifier), or the Mozilla roots bundled in
/// webpki-roots where the platform has none.
pub(crate) fn system_verifier(
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> {
    match rustls_platform_verifier::Verifier::new(provider.clone()) {
        Ok(platform) => Ok(Arc::new(platform)),
        Err(_) => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
            Ok(verifier)
        }
    }
}
