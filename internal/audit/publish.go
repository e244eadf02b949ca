package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
)

// FilePublisher writes each new checkpoint to a file, replacing the one
// before atomically (write, sync, rename), so that a reader never sees
// half a checkpoint. Put the file where the server's operators cannot
// rewrite what a witness already copied: another machine's mount, a
// bucket with object versioning.
type FilePublisher struct {
	Path string
}

// Publish implements Publisher.
func (p *FilePublisher) Publish(ctx context.Context, checkpoint []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p.Path), ".checkpoint-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(checkpoint); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p.Path)
}

func (p *FilePublisher) String() string { return "file " + p.Path }

// WebhookPublisher POSTs each new checkpoint, as text/plain, to a URL (a
// witness's inbox). A 2xx answer is success.
type WebhookPublisher struct {
	URL    string
	Client *http.Client // http.DefaultClient if nil
}

// Publish implements Publisher.
func (p *WebhookPublisher) Publish(ctx context.Context, checkpoint []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(checkpoint))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return nil
}

// String names the destination without its query, which may hold a
// secret.
func (p *WebhookPublisher) String() string {
	u, err := url.Parse(p.URL)
	if err != nil {
		return "webhook"
	}
	return "webhook " + u.Scheme + "://" + u.Host + u.Path
}
