package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bar is a Progress that draws a bar on a terminal, redrawn in place at most ten times a second,
// or, when the output is not a terminal, prints a line at every tenth of the way.
type Bar struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	width int

	mu         sync.Mutex
	total      int
	done       int
	start      time.Time
	lastDraw   time.Time
	lastDecile int
	label      string
}

// NewBar returns a Bar writing to w; tty says whether w is a terminal.
func NewBar(w io.Writer, tty bool) *Bar {
	return &Bar{w: w, tty: tty, now: time.Now, width: 30}
}

func (b *Bar) Start(total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total, b.start = max(total, 1), b.now()
	b.drawLocked(true)
}

func (b *Bar) Add(n int, label string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = min(b.done+n, b.total)
	b.label = label
	b.drawLocked(false)
}

func (b *Bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = b.total
	b.label = "done"
	b.drawLocked(true)
	if b.tty {
		fmt.Fprintln(b.w)
	}
}

// Line renders the bar as text, without a line end.
func (b *Bar) Line() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lineLocked()
}

func (b *Bar) lineLocked() string {
	frac := float64(b.done) / float64(b.total)
	fill := int(frac * float64(b.width))
	bar := strings.Repeat("=", fill)
	if fill < b.width {
		bar += ">" + strings.Repeat(" ", b.width-fill-1)
	}
	eta := "?"
	if el := b.now().Sub(b.start); b.done > 0 && b.done < b.total {
		eta = (time.Duration(float64(el)/frac) - el).Round(time.Second).String()
	} else if b.done >= b.total {
		eta = "0s"
	}
	return fmt.Sprintf("[%s] %3.0f%% %d/%d eta %s  %s", bar, frac*100, b.done, b.total, eta, b.label)
}

// Preconditions: b.mu is held.
func (b *Bar) drawLocked(force bool) {
	now := b.now()
	if b.tty {
		if !force && now.Sub(b.lastDraw) < 100*time.Millisecond {
			return
		}
		b.lastDraw = now
		fmt.Fprintf(b.w, "\r\033[K%s", b.lineLocked())
		return
	}
	decile := b.done * 10 / b.total
	if force || decile > b.lastDecile {
		b.lastDecile = decile
		fmt.Fprintln(b.w, b.lineLocked())
	}
}
