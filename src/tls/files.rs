//! PEM certificates and private keys, read from bytes so the reloader can
//! hash exactly what it parses.
//!
//! Keys may be PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE
//! KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`): Linkerd 1 took PKCS#8 only and
//! its users kept converting keys by hand. Encrypted keys are refused with
//! a message that says so, rather than "no key found".

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Read a file named by config key `key`.
pub fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        key,
        path: path.to_path_buf(),
        error,
    })
}

fn pem_err(key: &'static str, path: &Path, e: &pem::Error) -> TlsError {
    let message = match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "not valid PEM: missing '{}'",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "not valid PEM: bad section start '{}'",
            String::from_utf8_lossy(line)
        ),
        pem::Error::Base64Decode(m) => format!("not valid PEM: bad base64: {m}"),
        other => format!("not valid PEM: {other}"),
    };
    TlsError::Pem {
        key,
        path: path.to_path_buf(),
        message,
    }
}

/// Every `CERTIFICATE` block of a PEM file, in order; at least one.
pub fn certs_from_pem(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(bytes) {
        certs.push(c.map_err(|e| pem_err(key, path, &e))?);
    }
    if certs.is_empty() {
        return Err(TlsError::Pem {
            key,
            path: path.to_path_buf(),
            message: "no certificate found (expected a '-----BEGIN CERTIFICATE-----' block)".into(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 or SEC1.
pub fn key_from_pem(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(bytes);
            let message = if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
                "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)"
                    .to_string()
            } else if text.contains("BEGIN CERTIFICATE") {
                "found a certificate where a private key was expected".to_string()
            } else {
                "no private key found (expected a PKCS#8 'BEGIN PRIVATE KEY', PKCS#1 'BEGIN RSA PRIVATE KEY' or SEC1 'BEGIN EC PRIVATE KEY' block)".to_string()
            };
            Err(TlsError::Pem {
                key,
                path: path.to_path_buf(),
                message,
            })
        }
        Err(e) => Err(pem_err(key, path, &e)),
    }
}

/// A root store of every certificate in `bytes`; each must be usable as a
/// trust anchor.
pub fn roots_from_pem(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
    roots: &mut rustls::RootCertStore,
) -> Result<(), TlsError> {
    for cert in certs_from_pem(key, path, bytes)? {
        roots.add(cert).map_err(|error| TlsError::Rustls {
            what: format!("{key} {}: unusable CA certificate", path.display()),
            error,
        })?;
    }
    Ok(())
}

/// A certificate's validity window, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

impl Validity {
    /// Read the window from a DER certificate; `None` if it does not parse
    /// (rustls will then say what is wrong with it).
    pub fn of(der: &[u8]) -> Option<Validity> {
        // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
        // OPTIONAL, serialNumber, signature, issuer, validity, ... } ... }
        let (_, cert, _) = tlv(der)?;
        let (_, mut tbs, _) = tlv(cert)?;
        let (tag, _, rest) = tlv(tbs)?;
        if tag == 0xa0 {
            tbs = rest;
        }
        // serialNumber, signature, issuer
        for _ in 0..3 {
            tbs = tlv(tbs)?.2;
        }
        let (_, validity, _) = tlv(tbs)?;
        let (t1, nb, rest) = tlv(validity)?;
        let (t2, na, _) = tlv(rest)?;
        Some(Validity {
            not_before: asn1_time(t1, nb)?,
            not_after: asn1_time(t2, na)?,
        })
    }

    /// Why a certificate valid in this window cannot be used at `now`.
    pub fn problem_at(&self, now: i64) -> Option<String> {
        if now > self.not_after {
            Some(format!(
                "certificate expired on {}",
                show_time(self.not_after)
            ))
        } else if now < self.not_before {
            Some(format!(
                "certificate not valid before {}",
                show_time(self.not_before)
            ))
        } else {
            None
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Refuse a leaf certificate that is expired or not yet valid.
pub fn check_validity(
    key: &'static str,
    path: &Path,
    leaf: &CertificateDer<'_>,
) -> Result<(), TlsError> {
    match Validity::of(leaf).and_then(|v| v.problem_at(now_secs())) {
        Some(message) => Err(TlsError::Validity {
            key,
            path: path.to_path_buf(),
            message,
        }),
        None => Ok(()),
    }
}

/// One DER TLV: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, b.get(end..)?))
}

/// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18,
/// `YYYYMMDDHHMMSSZ`) to Unix seconds.
fn asn1_time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        0x18 => (num(0..4)?, 4),
        _ => return None,
    };
    let month = num(rest..rest + 2)?;
    let day = num(rest + 2..rest + 4)?;
    let h = num(rest + 4..rest + 6)?;
    let m = num(rest + 6..rest + 8)?;
    let sec = num(rest + 8..rest + 10)?;
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-27T08:30:00Z`.
fn show_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(show_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(show_time(1_795_856_400), "2026-11-28T09:00:00Z");
        assert_eq!(asn1_time(0x17, b"261128090000Z"), Some(1_795_856_400));
        assert_eq!(asn1_time(0x18, b"20261128090000Z"), Some(1_795_856_400));
        assert_eq!(asn1_time(0x18, b"2026112809"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(Validity::of(&[]), None);
        assert_eq!(Validity::of(&[0x30, 0x82, 0xff]), None);
        let p = Path::new("k.pem");
        assert!(key_from_pem("keyPath", p, b"nothing").is_err());
        let e = key_from_pem(
            "keyPath",
            p,
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
        let e = certs_from_pem("certPath", p, b"").unwrap_err();
        assert!(
            e.to_string().starts_with("certPath k.pem: no certificate"),
            "{e}"
        );
    }
}
