package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// problems collects what is wrong with the flags and the environment, so
// that one bad value does not hide the others: the flag package stops at
// the first value it cannot set.
type problems struct {
	list []error
	// env names the variable being read while the environment is applied,
	// and is "" while the command line is parsed.
	env string
	// onCommandLine holds the names of the flags the command line set.
	onCommandLine map[string]bool
}

func (p *problems) add(err error) { p.list = append(p.list, err) }

// checked is a flag.Value that reports a value it cannot set to problems,
// naming the flag or the variable it came from and quoting what was
// typed, and lets parsing go on. The wrapped Value's errors complete a
// sentence that starts with that quote: `--max-bindings "x" is not a
// whole number`.
type checked struct {
	flag.Value
	name string
	p    *problems
}

func (c checked) Set(s string) error {
	if c.p.env == "" {
		if c.p.onCommandLine == nil {
			c.p.onCommandLine = map[string]bool{}
		}
		c.p.onCommandLine[c.name] = true
	}
	if err := c.Value.Set(s); err != nil {
		if c.p.env != "" {
			c.p.add(fmt.Errorf("environment %s=%q %w", c.p.env, s, err))
		} else {
			c.p.add(fmt.Errorf("--%s %q %w", c.name, s, err))
		}
	}
	return nil
}

// IsBoolFlag lets a checked boolean stand alone (--trust-proxy), as the
// flag package's own do.
func (c checked) IsBoolFlag() bool {
	b, ok := c.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// stringValue is a string flag.
type stringValue string

func (v *stringValue) String() string {
	if v == nil {
		return ""
	}
	return string(*v)
}

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

// durationValue is a time.Duration flag whose errors say what a duration
// looks like.
type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err == nil {
		*v.p = d
		return nil
	}
	if _, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64); ferr == nil {
		return fmt.Errorf("needs a unit: durations are written like %ss, 500ms or 1m30s", strings.TrimSpace(s))
	}
	return errors.New("is not a duration; write one like 20s, 500ms or 1m30s")
}

// intValue is an int flag whose errors say what was expected.
type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("is out of range")
		}
		return errors.New("is not a whole number")
	}
	*v.p = n
	return nil
}

// floatValue is a float64 flag whose errors say what was expected.
type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return errors.New("is not a number")
	}
	*v.p = f
	return nil
}

// boolValue is a bool flag whose errors say what was expected.
type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("must be true or false")
	}
	*v.p = b
	return nil
}

func (v boolValue) IsBoolFlag() bool { return true }
