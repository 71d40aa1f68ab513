// agentlog reviews page: products with their star ratings, a product's reviews, adding a review,
// and a summary produced through the agent (or offline when the pipeline does not answer in time).
// Plain JS, no build step; talks to /api/products (agentlog.web.reviews).
"use strict";

const state = { products: [], current: null };

// The gateway answers errors as {error}; a bare FastAPI app as {detail}.
function errorText(result) {
  const data = result.data || {};
  if (typeof data.error === "string") return data.error;
  if (Array.isArray(data.detail)) return data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return data.detail || `request failed (${result.status})`;
}

function stars(rating) {
  const node = element("span", "stars");
  const full = Math.round(rating || 0);
  node.title = rating == null ? "no ratings" : `${rating} of 5`;
  node.append(element("span", "", "★".repeat(full)), element("span", "off", "★".repeat(5 - full)));
  return node;
}

function renderProducts() {
  const list = $("products");
  list.replaceChildren();
  for (const product of state.products) {
    const item = element("li", product.id === state.current ? "current" : "");
    const meta = element("span", "meta");
    meta.append(stars(product.averageRating), element("span", "", `${product.averageRating ?? "–"} · ${product.reviewCount} reviews`));
    item.append(element("span", "title", product.name), meta);
    item.addEventListener("click", () => select(product.id));
    list.append(item);
  }
}

async function loadProducts() {
  const result = await api("GET", "/api/products");
  if (result.status !== 200) {
    $("products-error").textContent = errorText(result);
    $("products-error").hidden = false;
    return;
  }
  state.products = result.data;
  renderProducts();
}

function renderSummary(summary) {
  $("summary-text").textContent = summary ? summary.summary : "No summary for the current reviews yet.";
  $("summary-text").className = summary ? "" : "muted";
  const meta = $("summary-meta");
  meta.replaceChildren();
  if (!summary) return;
  const source = element("span", `source ${summary.source}`, summary.source === "agent" ? "by the agent" : "offline fallback");
  const when = new Date(summary.generatedAt).toLocaleString();
  meta.append(source, document.createTextNode(` generated ${when}${summary.cached ? " · from the cache" : ""}`));
}

function renderReview(review) {
  const item = element("li", "review");
  const row = element("div", "row");
  const author = element("span", "author", review.author);
  author.dir = "auto";
  row.append(author, stars(review.rating),
    element("span", "when", new Date(review.createdAt).toLocaleDateString()));
  const content = element("p", "", review.content);
  content.dir = "auto"; // Hebrew reviews read right to left
  item.append(row, content);
  return item;
}

async function select(productId) {
  state.current = productId;
  renderProducts();
  const result = await api("GET", `/api/products/${productId}/reviews`);
  if (result.status !== 200) { toast(errorText(result)); return; }
  const { product, reviews, averageRating, summary } = result.data;
  $("placeholder").hidden = true;
  $("product").hidden = false;
  $("product-name").textContent = product.name;
  $("product-rating").replaceChildren(stars(averageRating),
    element("span", "muted small", ` ${averageRating ?? "–"} (${reviews.length})`));
  $("product-price").textContent = `USD ${Number(product.price).toFixed(2)}`;
  $("product-description").textContent = product.description || "";
  $("reviews-title").textContent = `Reviews (${reviews.length})`;
  $("reviews").replaceChildren(...reviews.map(renderReview));
  renderSummary(summary);
}

async function summarize() {
  if (state.current == null) return;
  const button = $("summarize");
  button.disabled = true;
  button.textContent = "The agent is analysing…";
  try {
    const result = await api("POST", `/api/products/${state.current}/reviews/summarize`);
    if (result.status !== 200) { toast(errorText(result)); return; }
    renderSummary(result.data);
  } finally {
    button.disabled = false;
    button.textContent = "Summarize with the agent";
  }
}

async function addReview(event) {
  event.preventDefault();
  if (state.current == null) return;
  const body = { author: $("author").value, rating: Number($("rating").value), content: $("content").value };
  const result = await api("POST", `/api/products/${state.current}/reviews`, body);
  if (result.status !== 201) { toast(errorText(result)); return; }
  $("content").value = "";
  toast("Review posted");
  await loadProducts();
  await select(state.current);
}

$("summarize").addEventListener("click", summarize);
$("review-form").addEventListener("submit", addReview);
loadProducts().then(() => { if (state.products.length) select(state.products[0].id); });
