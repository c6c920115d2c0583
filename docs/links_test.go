package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's root, from this package's directory.
const root = ".."

// linkPattern finds inline links and images, [text](target "title"), and
// reference definitions, [label]: target.
var (
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	htmlLink   = regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	scheme     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// TestLinksStayInRepository checks every link of every Markdown file of the
// repository: a link with a scheme (https:, mailto:) goes to the web,
// which is fine; any other must name a file inside the repository that
// exists, and a #fragment must name a heading of the file it points to.
// A clone must carry everything its documents refer to.
func TestLinksStayInRepository(t *testing.T) {
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	docs := markdownFiles(t, rootAbs)
	if len(docs) < 3 {
		t.Fatalf("found %d Markdown files under %s; the walk is broken", len(docs), rootAbs)
	}
	anchors := map[string]map[string]bool{} // file → its headings' anchors
	anchorsOf := func(file string) map[string]bool {
		if a, ok := anchors[file]; ok {
			return a
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		anchors[file] = headingAnchors(string(b))
		return anchors[file]
	}
	checked := 0
	for _, file := range docs {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(rootAbs, file)
		for _, l := range links(string(b)) {
			checked++
			where := rel + ":" + strconv.Itoa(l.line)
			if l.target == "" || scheme.MatchString(l.target) {
				continue
			}
			path, frag, _ := strings.Cut(l.target, "#")
			target := file
			if path != "" {
				if filepath.IsAbs(path) || strings.HasPrefix(path, "/") {
					t.Errorf("%s: link %q is absolute; write it relative to the file", where, l.target)
					continue
				}
				target = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				if r, err := filepath.Rel(rootAbs, target); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
					t.Errorf("%s: link %q leaves the repository; a clone does not have it", where, l.target)
					continue
				}
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: link %q names a file that does not exist", where, l.target)
					continue
				}
			}
			if frag != "" && strings.HasSuffix(target, ".md") && !anchorsOf(target)[frag] {
				t.Errorf("%s: link %q names no heading of %s", where, l.target, filepath.Base(target))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no links found; the parser is broken")
	}
}

// TestLinksCatchLeaving makes sure the checks above can fail: a link out of
// the repository is seen as one.
func TestLinksCatchLeaving(t *testing.T) {
	ls := links("See [the spec](../shared/SPEC.md) and [x]: ../../y.md\n\n[ok](api.md#the-request)\n```\n[not a link](../code)\n```\n`[nor](../this)`\n")
	var got []string
	for _, l := range ls {
		got = append(got, l.target)
	}
	if strings.Join(got, " ") != "../shared/SPEC.md api.md#the-request" {
		t.Errorf("links = %q", got)
	}
	if a := headingAnchors("# The events API\n## `204 No Content`\n### Node.js: the npm `eventsource` package\n## Errors\n## Errors\n"); !a["204-no-content"] || !a["nodejs-the-npm-eventsource-package"] || !a["errors-1"] || !a["the-events-api"] {
		t.Errorf("anchors = %v", a)
	}
}

// markdownFiles returns the Markdown files under dir, leaving out what
// Git does not track here: node_modules and dot directories.
func markdownFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") || d.Name() == "artifacts") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type link struct {
	line   int
	target string
}

// links returns the link targets of a Markdown text, outside code blocks
// and code spans.
func links(text string) []link {
	var out []link
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		line = stripCodeSpans(line)
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			out = append(out, link{i + 1, m[1]})
		}
		for _, m := range htmlLink.FindAllStringSubmatch(line, -1) {
			out = append(out, link{i + 1, m[1]})
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			out = append(out, link{i + 1, m[1]})
		}
	}
	return out
}

// stripCodeSpans removes `code` spans (of any number of backticks) from
// line.
func stripCodeSpans(line string) string {
	var b strings.Builder
	for {
		i := strings.Index(line, "`")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		n := len(line[i:]) - len(strings.TrimLeft(line[i:], "`"))
		ticks := line[i : i+n]
		end := strings.Index(line[i+n:], ticks)
		if end < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i])
		line = line[i+n+end+n:]
	}
}

// headingAnchors returns the anchors that GitHub gives the headings of a
// Markdown text: lower case, punctuation other than - and _ dropped,
// spaces made -, and -1, -2... after repeats.
func headingAnchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, " "), "```") {
			fence = !fence
			continue
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}
