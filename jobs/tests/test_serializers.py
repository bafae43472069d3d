"""The URL check of submitted image URLs: its quick pattern never lets through what the full check refuses."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.serializers import PLAIN_HTTP_URL, is_http_url, parses_as_http_url


@settings(max_examples=500)
@given(url=st.from_regex(PLAIN_HTTP_URL, fullmatch=True))
def test_every_url_the_quick_pattern_takes_passes_the_full_check(url):
    assert parses_as_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://img.example.com/a.jpg",  # the scheme in capitals
        "http://img.example.com:65535/a.jpg",  # a five-digit port
        "http://user:secret@img.example.com/a.jpg",
        "http://[2001:db8::1]/a.jpg",
        "https://bücher.example/a.jpg",
    ],
)
def test_urls_outside_the_quick_pattern_are_checked_in_full(url):
    assert not PLAIN_HTTP_URL.fullmatch(url)
    assert is_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://img.example.com/a.jpg",
        "http:///a.jpg",
        "http://img.example.com:0/a.jpg",
        "http://img.example.com:65536/a.jpg",
        "http://[2001:db8::1/a.jpg",
        "http://img.example.com/a b.jpg",
        "http://img.example.com/a\u00a0b.jpg",  # a no-break space
        "http://img.example.com/a\x7f.jpg",
        "/a.jpg",
    ],
)
def test_the_check_refuses(url):
    assert not is_http_url(url)
