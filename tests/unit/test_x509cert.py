"""x509cert (pure): fingerprints as xapi prints them, deterministic self-signed
certificates, the release's check order; ServerCerts under many threads."""

from __future__ import annotations

import datetime
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import x509cert
from xapi_sim.install_certs import ServerCerts

NB = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NA = NB + datetime.timedelta(days=3650)


@given(st.binary(min_size=1, max_size=64))
def test_pp_hash_is_uppercase_octets(digest):
    text = x509cert.pp_hash(digest)
    assert bytes.fromhex(text.replace(":", "")) == digest
    assert text == text.upper() and len(text) == 3 * len(digest) - 1


@settings(max_examples=10, deadline=None)
@given(st.text(alphabet="abcdef0123456789-", min_size=1, max_size=36))
def test_self_signed_is_a_function_of_its_arguments(seed):
    a = x509cert.self_signed(seed, "h1", NB, NA)
    assert a == x509cert.self_signed(seed, "h1", NB, NA)
    fp, nb, na = x509cert.facts(a)
    assert (nb, na) == (NB, NA)
    assert fp != x509cert.facts(x509cert.self_signed(seed + "x", "h1", NB, NA))[0]


@given(
    st.datetimes(
        min_value=datetime.datetime(1970, 1, 1),
        max_value=datetime.datetime(9999, 1, 1),
        timezones=st.just(datetime.UTC),
    )
)
def test_timestamps_round_trip(t):
    t = t.replace(microsecond=0)
    assert x509cert.from_ts(x509cert.ts_of(t)) == t


def test_server_certs_many_threads():
    svc = ServerCerts(None)

    def work(i):
        for j in range(200):
            svc.put(f"h{i % 4}", f"r{i}.{j}", f"fp{i}.{j}", None)
            got = svc.get(f"h{i % 4}")
            assert got is not None and got[0].startswith("r")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(svc._by_host) == ["h0", "h1", "h2", "h3"]


def test_ca_library_and_cleaned_patches_many_threads():
    from xapi_sim.classes.certificates import CaLibrary
    from xapi_sim.classes.patches import CleanedPatches

    lib, cleaned = CaLibrary(None), CleanedPatches(None)

    def work(i):
        for j in range(200):
            name = f"c{i}-{j}.pem"
            lib.add("pool", name, "pem")
            assert name in lib.names("pool")
            cleaned.mark(name, True)
            assert name in cleaned
            if j % 2:
                lib.remove("pool", name)
                cleaned.mark(name, False)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = lib.names("pool")
    assert len(names) == 16 * 100 and all(int(n.split("-")[1][:-4]) % 2 == 0 for n in names)
    assert all((n in cleaned) for n in names)
