/* Unit tests of the S3 XML writer, time formats and reader (proto/s3/s3_xml.h). */
#include "proto/s3/s3_xml.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static bool document_is(const struct s3_xml *document, const char *expected) {
    size_t length = strlen(expected);
    if (document->failed || document->length != length ||
        memcmp(document->data, expected, length) != 0) {
        fprintf(stderr, "    got: %.*s\n", (int)document->length, document->data);
        return false;
    }
    return true;
}

static void test_writer(void) {
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListBucketResult", true);
    s3_xml_string(&document, "Name", "bucket");
    s3_xml_text(&document, "Key", "a<b>&\"c'\td\ne\rf\x01g\x1fh\x7f", 19);
    s3_xml_number(&document, "Size", 18446744073709551615ULL);
    s3_xml_bool(&document, "IsTruncated", false);
    s3_xml_time(&document, "LastModified", 1796008021123LL);
    s3_xml_raw(&document, "<X/>", 4);
    s3_xml_close(&document, "ListBucketResult");
    CHECK(document_is(&document,
                      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                      "<Name>bucket</Name>"
                      "<Key>a&lt;b&gt;&amp;&quot;c&apos;&#x9;d&#xA;e&#xD;f&#x1;g&#x1F;h\x7f</Key>"
                      "<Size>18446744073709551615</Size><IsTruncated>false</IsTruncated>"
                      "<LastModified>2026-11-30T03:07:01.123Z</LastModified><X/>"
                      "</ListBucketResult>"));
    s3_xml_free(&document);
    CHECK(document.data == NULL && document.length == 0);

    /* A NUL byte in a key is written as a reference too, and a long text grows it. */
    s3_xml_begin(&document);
    char big[5000];
    memset(big, 'k', sizeof(big));
    big[10] = '\0';
    s3_xml_text(&document, "Key", big, sizeof(big));
    CHECK(!document.failed && document.length == 39 + 5 + (5000 - 1 + 5) + 6);
    CHECK(memmem(document.data, document.length, "kk&#x0;kk", 9) != NULL);
    s3_xml_free(&document);
}

static void test_times(void) {
    char text[32];
    s3_time_iso8601(0, text);
    CHECK(strcmp(text, "1970-01-01T00:00:00.000Z") == 0);
    s3_time_iso8601(1796008021007LL, text);
    CHECK(strcmp(text, "2026-11-30T03:07:01.007Z") == 0);
    s3_time_iso8601(-1, text);
    CHECK(strcmp(text, "1969-12-31T23:59:59.999Z") == 0);
    s3_time_http(1796008021999LL, text);
    CHECK(strcmp(text, "Mon, 30 Nov 2026 03:07:01 GMT") == 0);
    s3_time_http(951782400000LL, text);
    CHECK(strcmp(text, "Tue, 29 Feb 2000 00:00:00 GMT") == 0);

    /* RFC 9110's example in its three forms. */
    int64_t ms = 0;
    const int64_t expected = 784111777000LL;
    CHECK(s3_time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT", 29, &ms) && ms == expected);
    CHECK(s3_time_parse_http("Sunday, 06-Nov-94 08:49:37 GMT", 30, &ms) && ms == expected);
    CHECK(s3_time_parse_http("Sun Nov  6 08:49:37 1994", 24, &ms) && ms == expected);
    CHECK(s3_time_parse_http("Wed Nov 16 08:49:37 1994", 24, &ms) &&
          ms == expected + 10 * 86400000LL);
    /* What it writes, it reads. */
    s3_time_http(1796008021000LL, text);
    CHECK(s3_time_parse_http(text, strlen(text), &ms) && ms == 1796008021000LL);
    /* Not dates. */
    static const char *const bad[] = {
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "",
        "Sun, 29 Feb 1900 00:00:00 GMT",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool parsed = s3_time_parse_http(bad[i], strlen(bad[i]), &ms);
        if (parsed) fprintf(stderr, "    parsed: \"%s\"\n", bad[i]);
        CHECK(!parsed);
    }
}

/* Every visit as "path=text|" (text NULL as "path/|"), stopping at STOP_AT if set. */
struct visits {
    char log[4096];
    size_t length;
    const char *stop_at;
};

static bool record_visit(void *context, const char *path, const char *text, size_t length) {
    struct visits *visits = context;
    if (visits->stop_at != NULL && strcmp(path, visits->stop_at) == 0) return false;
    if (text != NULL && text[length] != '\0') return false; /* must be NUL-terminated */
    int written = text != NULL
                      ? snprintf(visits->log + visits->length, sizeof(visits->log) - visits->length,
                                 "%s=%.*s|", path, (int)length, text)
                      : snprintf(visits->log + visits->length, sizeof(visits->log) - visits->length,
                                 "%s/|", path);
    visits->length += (size_t)written;
    return true;
}

static bool parses_to(const char *xml, const char *expected) {
    struct visits visits = {0};
    const char *reason = NULL;
    if (!s3_xml_parse(xml, strlen(xml), record_visit, &visits, &reason)) {
        fprintf(stderr, "    refused (%s): %s\n", reason, xml);
        return false;
    }
    if (strcmp(visits.log, expected) != 0) {
        fprintf(stderr, "    got %s\n", visits.log);
        return false;
    }
    return true;
}

static bool refused(const char *xml, const char *reason_expected) {
    struct visits visits = {0};
    const char *reason = NULL;
    if (s3_xml_parse(xml, strlen(xml), record_visit, &visits, &reason)) {
        fprintf(stderr, "    accepted: %s\n", xml);
        return false;
    }
    if (reason == NULL || strcmp(reason, reason_expected) != 0) {
        fprintf(stderr, "    reason %s, expected %s\n", reason ? reason : "(null)",
                reason_expected);
        return false;
    }
    return true;
}

static void test_request_bodies(void) {
    CHECK(parses_to("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
                    "  <Part>\n    <PartNumber>1</PartNumber>\n"
                    "    <ETag>\"a54357aff0632cce46d942af68356b38\"</ETag>\n  </Part>\n"
                    "  <Part><PartNumber>2</PartNumber><ETag>&quot;0c78aef8&quot;</ETag>"
                    "<ChecksumCRC32C>sOO8/Q==</ChecksumCRC32C></Part>\n"
                    "</CompleteMultipartUpload>\n",
                    "CompleteMultipartUpload/Part/PartNumber=1|"
                    "CompleteMultipartUpload/Part/ETag=\"a54357aff0632cce46d942af68356b38\"|"
                    "CompleteMultipartUpload/Part/|"
                    "CompleteMultipartUpload/Part/PartNumber=2|"
                    "CompleteMultipartUpload/Part/ETag=\"0c78aef8\"|"
                    "CompleteMultipartUpload/Part/ChecksumCRC32C=sOO8/Q==|"
                    "CompleteMultipartUpload/Part/|CompleteMultipartUpload/|"));
    CHECK(parses_to("<Delete>\r\n<Quiet>true</Quiet><Object><Key>a b&amp;c</Key>"
                    "<VersionId>v1</VersionId></Object><Object><Key> sp &#x1;&#233;&#x1F600;"
                    "</Key></Object><!-- a comment <Object> --><Object><Key/></Object></Delete>",
                    "Delete/Quiet=true|Delete/Object/Key=a b&c|Delete/Object/VersionId=v1|"
                    "Delete/Object/|Delete/Object/Key= sp \x01\xc3\xa9\xf0\x9f\x98\x80|"
                    "Delete/Object/|Delete/Object/Key=|Delete/Object/|Delete/|"));
    CHECK(parses_to("<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<Status>Enabled</Status><MfaDelete>Disabled</MfaDelete>"
                    "</VersioningConfiguration>",
                    "VersioningConfiguration/Status=Enabled|"
                    "VersioningConfiguration/MfaDelete=Disabled|VersioningConfiguration/|"));
    CHECK(parses_to("<CreateBucketConfiguration a='1' b = \"x>y\">"
                    "<LocationConstraint>eu-west-1</LocationConstraint >"
                    "</CreateBucketConfiguration>",
                    "CreateBucketConfiguration/LocationConstraint=eu-west-1|"
                    "CreateBucketConfiguration/|"));
    /* Entities, CDATA, line ends normalized, an empty root. */
    CHECK(parses_to("<a>&lt;&gt;&amp;&apos;&quot;<![CDATA[<&>]]>x\r\ny\rz</a>",
                    "a=<>&'\"<&>x\ny\nz|"));
    CHECK(parses_to("<a/>", "a=|"));
    CHECK(parses_to("\xEF\xBB\xBF<a>1</a>\n<!-- after -->\n", "a=1|"));
    /* The visitor stops the parse. */
    struct visits visits = {.stop_at = "Delete/Object/Key"};
    const char *reason = NULL;
    const char *xml = "<Delete><Object><Key>k</Key></Object></Delete>";
    CHECK(!s3_xml_parse(xml, strlen(xml), record_visit, &visits, &reason) &&
          strcmp(reason, "stopped") == 0);
}

static void test_refusals(void) {
    CHECK(refused("<!DOCTYPE d [<!ENTITY x \"y\">]><d>&x;</d>",
                  "DTDs and entity declarations are not allowed"));
    CHECK(refused("<d><!ENTITY x \"y\"></d>", "DTDs and entity declarations are not allowed"));
    CHECK(refused("<d>&x;</d>", "unknown entity"));
    CHECK(refused("<d>&amp</d>", "unknown entity"));
    CHECK(refused("<d>&#0;</d>", "bad character reference"));
    CHECK(refused("<d>&#xD800;</d>", "bad character reference"));
    CHECK(refused("<d>&#x110000;</d>", "bad character reference"));
    CHECK(refused("<d>&#12a;</d>", "bad character reference"));
    CHECK(refused("<d>&#;</d>", "bad character reference"));
    CHECK(refused("<a><b>1</b></c>", "mismatched tag"));
    CHECK(refused("<a><b>1</a></b>", "mismatched tag"));
    CHECK(refused("</a>", "mismatched tag"));
    CHECK(refused("<a><b>1</b>text</a>", "mixed content"));
    CHECK(refused("<a>text<b>1</b></a>", "mixed content"));
    CHECK(refused("<a>1</a><b>2</b>", "more than one root element"));
    CHECK(refused("x<a>1</a>", "text outside the root element"));
    CHECK(refused("<a>1</a>x", "text outside the root element"));
    CHECK(refused("", "no root element"));
    CHECK(refused("<?xml version=\"1.0\"?><!-- only -->", "no root element"));
    CHECK(refused("<a x=1>t</a>", "bad attribute"));
    CHECK(refused("<a x=\"<\">t</a>", "bad attribute"));
    CHECK(refused("< a>t</a>", "bad tag"));
    /* Nesting: S3_XML_MAX_DEPTH levels are fine, one more is not. */
    char deep[512] = "";
    for (int i = 0; i < S3_XML_MAX_DEPTH; i++)
        strcat(deep, "<e>");
    strcat(deep, "x");
    for (int i = 0; i < S3_XML_MAX_DEPTH; i++)
        strcat(deep, "</e>");
    struct visits visits = {0};
    const char *reason = NULL;
    CHECK(s3_xml_parse(deep, strlen(deep), record_visit, &visits, &reason));
    char deeper[512] = "<f>";
    strcat(deeper, deep);
    strcat(deeper, "</f>");
    CHECK(refused(deeper, "too deep"));
    /* Every proper prefix of a good document is truncated (or has no root yet). */
    const char *good = "<?xml version=\"1.0\"?><Delete><Object><Key>a&amp;b</Key>"
                       "<!-- c --><VersionId a=\"1\">v</VersionId></Object></Delete>";
    for (size_t cut = 0; cut < strlen(good); cut++) {
        struct visits partial = {0};
        bool parsed = s3_xml_parse(good, cut, record_visit, &partial, &reason);
        if (parsed) fprintf(stderr, "    prefix of %zu bytes accepted\n", cut);
        CHECK(!parsed);
    }
    CHECK(parses_to(good, "Delete/Object/Key=a&b|Delete/Object/VersionId=v|Delete/Object/|"
                          "Delete/|"));
}

int main(void) {
    RUN_TEST(test_writer);
    RUN_TEST(test_times);
    RUN_TEST(test_request_bodies);
    RUN_TEST(test_refusals);
    return test_main_result();
}
