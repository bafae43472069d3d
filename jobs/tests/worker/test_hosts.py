"""jobs.worker.hosts: a host's backoff, connections and latency, and the turn between hosts' queues."""

from jobs.worker import hosts


def test_host_state_backs_off_and_gives_connections_back():
    host = hosts.Host("img.example.com", connection_cap=8)
    host.sent(0.0)
    host.in_flight -= 1
    host.failed(now=0.0, error="HTTP 503", distress=True)
    assert (host.allowed, host.backoff_until) == (4.0, hosts.BACKOFF_FIRST)
    host.failed(now=0.1, error="HTTP 503", distress=True)  # an answer to a request sent before the backoff
    assert (host.allowed, host.backoff_until) == (4.0, hosts.BACKOFF_FIRST)
    assert not host.can_start(0.2)
    assert host.can_start(0.3)
    host.failed(now=0.3, error="HTTP 503", distress=True, retry_after=2.0)
    assert (host.allowed, host.backoff_until) == (2.0, 2.3)
    host.answered(now=2.5, seconds=0.02)
    assert (host.allowed, host.latency, host.failing) == (3.0, 0.02, False)


def test_a_host_waited_on_longer_than_its_latency_counts_as_slower():
    host = hosts.Host("img.example.com", connection_cap=8)
    host.sent(10.0)
    assert host.expected_latency(10.5) == 0.5
    host.answered(now=10.5, seconds=0.5)
    host.in_flight -= 1
    assert host.expected_latency(20.0) == 0.5


def test_a_host_failing_every_request_for_a_timeout_is_down():
    host = hosts.Host("img.example.com", connection_cap=8)
    host.sent(0.0)
    host.in_flight -= 1
    host.failed(now=2.0, error="timed out after 2 s", distress=False)
    assert not host.is_down(now=1.9, timeout=2.0)
    assert host.is_down(now=2.0, timeout=2.0)
    host.answered(now=2.1, seconds=0.1)
    assert not host.is_down(now=5.0, timeout=2.0)


def test_queues_take_from_each_host_in_turn_skipping_those_that_cannot_start():
    table = hosts.HostTable(connection_cap=2)
    a, b = table.host_of("http://a.example/1"), table.host_of("http://b.example:8080/1")
    assert table.host_of("http://a.example/2") is a
    queues = hosts.HostQueues()
    for n in range(3):
        queues.add(hosts.Waiting(n, f"http://a.example/{n}", a))
        queues.add(hosts.Waiting(10 + n, f"http://b.example:8080/{n}", b))
    b.backoff_until = 5.0

    assert [queues.take(1.0).image_id for _ in range(3)] == [0, 1, 2]  # b is backing off
    assert queues.take(1.0) is None
    assert queues.take(5.0).image_id == 10
    retried = hosts.Waiting(99, "http://b.example:8080/99", b)
    queues.add(retried, first=True)
    assert queues.take(5.0) is retried
    assert queues.waiting() == {b: 2}


def test_a_urls_host_is_told_without_parsing_it_and_without_its_password():
    table = hosts.HostTable(connection_cap=2)
    assert table.host_of("http://user:secret@Img.Example.com:8080/a.jpg").name == "img.example.com:8080"
    assert table.host_of("https://img.example.com?x=1") is table.host_of("https://IMG.example.com/b#c")
    assert table.host_of("not a URL").name == ""
