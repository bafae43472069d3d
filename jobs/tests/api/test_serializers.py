"""The URL check of submitted image URLs: its quick pattern never lets through what the full check
refuses, and the schema's pattern takes only URLs the check takes."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.api.serializers import HTTP_URL_PATTERN, PLAIN_HTTP_URL, is_http_url, parses_as_http_url


@settings(max_examples=500)
@given(url=st.from_regex(PLAIN_HTTP_URL, fullmatch=True))
def test_every_url_the_quick_pattern_takes_passes_the_full_check(url):
    assert parses_as_http_url(url)


@settings(max_examples=500)
@given(url=st.from_regex(HTTP_URL_PATTERN, fullmatch=True))
def test_every_url_the_schema_pattern_takes_passes_the_check(url):
    assert is_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example.com/a.jpg",
        "HTTPS://img.example.com:65535/a%20b.jpg?size=2&x=[1]#top",
        "http://user:secret@img.example.com/a.jpg",
        "http://img.example.com:080/bücher.jpg",
        "http://[2001:db8::1]:8080/a.jpg",
        "http://[::1]/",
        "http://img.example.com:/a.jpg",  # an empty port is no port
    ],
)
def test_the_schema_pattern_takes_urls_of_every_form(url):
    assert re.fullmatch(HTTP_URL_PATTERN, url)
    assert is_http_url(url)


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
def test_the_check_and_the_schema_pattern_refuse(url):
    assert not is_http_url(url)
    assert not re.fullmatch(HTTP_URL_PATTERN, url)
