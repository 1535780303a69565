"""End-to-end tests: the real ``yujing serve`` driven through Debian's chromium (issue 12, part 5)."""
