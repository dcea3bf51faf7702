package rest

import (
	"encoding/base64"
	"fmt"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/absmach/propeller/orchestration"
)

// pageOf pages a list held in memory (proplets, FL jobs, checkpoints) as
// the task store pages tasks: items sorted by key, at most limit of them
// after the continue token, which is the opaque last key of the previous
// page. A key must be unique and never change for an item; items added
// meanwhile show up on a later page if their key sorts after the token.
func pageOf[T any](c echo.Context, items []T, key func(T) string) (page []T, next string, err error) {
	limit, err := pageLimit(c)
	if err != nil {
		return nil, "", err
	}
	if limit == 0 {
		limit = orchestration.DefaultPageLimit
	}
	keys := make([]string, len(items))
	idx := make([]int, len(items))
	for i, it := range items {
		keys[i], idx[i] = key(it), i
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	start := 0
	if tok := c.QueryParam("continue"); tok != "" {
		after, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(after) == 0 {
			return nil, "", badContinue(tok)
		}
		start = sort.Search(len(idx), func(i int) bool { return keys[idx[i]] > string(after) })
	}
	end := min(start+limit, len(idx))
	page = make([]T, 0, end-start)
	for _, i := range idx[start:end] {
		page = append(page, items[i])
	}
	if end < len(idx) {
		next = base64.RawURLEncoding.EncodeToString([]byte(keys[idx[end-1]]))
	}
	return page, next, nil
}

// seqKey is a key that sorts as the number n does.
func seqKey(n int64) string { return fmt.Sprintf("%020d", n) }
