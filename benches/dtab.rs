//! Dtab benchmarks: parsing a 1,000-dentry dtab (throughput in bytes), one
//! lookup in it, and a 3-level bind through it.
//!
//! `cargo bench --bench dtab -- --warm-up-time 1 --measurement-time 3`

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard::dtab::{Dtab, Path, SystemNamers, bind};

/// A dtab shaped like a large production one: most dentries under `/svc`,
/// a mix of plain rewrites, weighted splits, fail-over, wildcards and
/// comments, plus a three-step chain for the bind benchmark.
fn big_dtab_text(n: usize) -> String {
    let mut s = String::from("# generated benchmark dtab\n/srv => /#/io.l5d.k8s/default/http;\n");
    for i in 0..n - 4 {
        let _ = match i % 6 {
            0 => writeln!(
                s,
                "/svc/service-{i} => /#/io.l5d.k8s/ns-{}/http/service-{i};",
                i % 17
            ),
            1 => writeln!(
                s,
                "/svc/service-{i} => 9 * /srv/service-{i}-v1 & /srv/service-{i}-v2;"
            ),
            2 => writeln!(
                s,
                "/svc/service-{i} => /srv/service-{i} | /dnssrv/service-{i}.srv.dc-2.example.org.;"
            ),
            3 => writeln!(
                s,
                "/host/*/service-{i} => /svc/service-{i}; # by any namespace"
            ),
            4 => writeln!(s, "/srv/service-{i} => /#/io.l5d.fs/service-{i};"),
            _ => writeln!(
                s,
                "/grpc/pkg{i}.Service => (/srv/grpc-{i} & 0.25 * /srv/grpc-{i}-canary) | ~;"
            ),
        };
        if i == n / 2 {
            s.push_str("/svc/chain => /srv/chain;\n/srv/chain => /env/prod/chain;\n");
            s.push_str("/env/prod => /$/inet/127.0.0.1/8080;\n");
        }
    }
    s
}

fn benches(c: &mut Criterion) {
    let text = big_dtab_text(1000);
    let dtab: Dtab = text.parse().expect("benchmark dtab parses");
    assert_eq!(dtab.len(), 1000);

    let mut g = c.benchmark_group("dtab");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_1000_dentries", |b| {
        b.iter(|| black_box(&text).parse::<Dtab>().ok())
    });
    g.finish();

    let path: Path = "/svc/service-498/api/v1".parse().expect("path");
    c.bench_function("dtab/lookup_in_1000", |b| {
        b.iter(|| black_box(&dtab).lookup(black_box(&path)))
    });

    let chain: Path = "/svc/chain/users".parse().expect("path");
    assert_eq!(
        bind(&dtab, &chain, &mut SystemNamers).map(|t| t.to_string()),
        Ok("/$/inet/127.0.0.1/8080".to_string())
    );
    c.bench_function("dtab/bind_3_levels_in_1000", |b| {
        b.iter(|| bind(black_box(&dtab), black_box(&chain), &mut SystemNamers))
    });
}

criterion_group!(dtab_benches, benches);
criterion_main!(dtab_benches);
